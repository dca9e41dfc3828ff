"""A training run's folder: its config, checkpoints, logs (TensorBoard + JSON lines) and images.

    RUN_DIR/config.yaml              the resolved config (also inside every checkpoint)
    RUN_DIR/checkpoints/step-N/      model.safetensors + state.pt, written atomically
    RUN_DIR/tensorboard/             scalars and image grids
    RUN_DIR/metrics.jsonl            the same scalars, one JSON object per logged step
    RUN_DIR/images/                  image grids as PNG
    RUN_DIR/eval.json                end-of-run evaluation
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ldmkit.checkpoint import latest_checkpoint, load_state, save_checkpoint, write_text_atomic
from ldmkit.config import dump_yaml, from_dict, to_dict
from ldmkit.errors import ConfigError, LdmkitError


def prepare_run(run_dir: str | Path, cfg: Any, resume: bool, comparable: tuple[str, ...]) -> tuple[Path, dict | None]:
    """Check a run folder before anything is written to it; on resume, return the latest training state.

    A resumed run must keep the sections in `comparable` (model, data, ...) unchanged; the
    training schedule may change (e.g. more steps). A folder that already holds a run is never
    overwritten without --resume. The folder is created by `write_run_config`, once the trainer has
    checked its data, so a run that fails its checks leaves nothing behind.
    """
    run_dir = Path(run_dir)
    latest = latest_checkpoint(run_dir) if run_dir.exists() else None
    state = None
    if resume:
        if latest is None:
            raise LdmkitError(f"--resume {run_dir}: no complete checkpoint there to resume from; start the run from "
                              "its config instead (without --resume)")
        state = load_state(latest / "state.pt")
        saved, now = _with_defaults(type(cfg), state["config"]), to_dict(cfg)
        for section in comparable:
            if saved.get(section) != now.get(section):
                diff = _first_difference(saved.get(section), now.get(section), section)
                raise ConfigError(f"cannot resume {run_dir}: config key '{diff}' differs from the run's own config; "
                                  f"resume with {run_dir / 'config.yaml'}")
    elif latest is not None:
        raise LdmkitError(f"{run_dir} already holds a run (last checkpoint {latest.name}); "
                          f"pass --resume {run_dir} to continue it, or choose another --out folder")
    return run_dir, state


def write_run_config(run_dir: Path, cfg: Any) -> None:
    """Create the run folder and write the resolved config into it (RUN_DIR/config.yaml)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_yaml(cfg))


def _with_defaults(cls: type, saved: dict) -> dict:
    """A saved config as this version reads it: keys added since it was written take their defaults,
    so a run saved before a new option existed still resumes."""
    try:
        return to_dict(from_dict(cls, saved))
    except ConfigError:  # a key this version no longer has: compare as saved (and name it)
        return saved


def _first_difference(a: Any, b: Any, where: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    return where


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_checkpoint(run_dir: Path, step: int, tensors: dict, kind: str, model_cfg: dict, state: dict,
                        run_cfg: Any, keep_last: int, keep_steps: tuple[int, ...] = ()) -> Path:
    """A checkpoint whose state (and model-file metadata) carries the whole resolved run config."""
    state = {**state, "config": to_dict(run_cfg)}
    return save_checkpoint(run_dir, step, tensors, kind, model_cfg, state, keep_last, keep_steps,
                           extra_metadata={"ldmkit.run_config": json.dumps(to_dict(run_cfg))})


class RunLogger:
    """Scalars to TensorBoard and metrics.jsonl, grids to TensorBoard and images/, final metrics."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled
        self.skipped_images = 0
        self._writer = None
        self._purge_step: int | None = None

    def resume_at(self, step: int) -> None:
        """Forget what a killed run logged after its last checkpoint (`step`): the resumed run logs those
        steps again, so metrics.jsonl and TensorBoard keep one row per step."""
        if not self.enabled:
            return
        self._purge_step = step + 1
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            rows = [line for line in metrics.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line).get("step", 0) <= step]
            if len(kept) != len(rows):
                write_text_atomic(metrics, "".join(line + "\n" for line in kept))

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self._purge_step)
        return self._writer

    def count_skipped(self, n: int) -> None:
        self.skipped_images += int(n)

    def scalars(self, step: int, logs: dict[str, Any], **extra: float) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in {**logs, **extra}.items()}
        values["skipped_images"] = float(self.skipped_images)
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def image(self, step: int, name: str, grid: Image.Image) -> None:
        if not self.enabled:
            return
        (self.run_dir / "images").mkdir(exist_ok=True)
        grid.save(self.run_dir / "images" / f"{name}-{step:08d}.png")
        self.writer.add_image(name, np.asarray(grid), step, dataformats="HWC")

    def final(self, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        write_text_atomic(self.run_dir / "eval.json", json.dumps(metrics, indent=2) + "\n")
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{key}", value, 0)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
