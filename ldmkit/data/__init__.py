"""Data: the embedded OpenMoji dataset, users' image folders, and resumable loaders."""

from ldmkit.data.config import DataConfig, build_dataset
from ldmkit.data.loader import eval_loader, train_loader

__all__ = ["DataConfig", "build_dataset", "train_loader", "eval_loader"]
