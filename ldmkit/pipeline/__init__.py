"""The pipeline: the two stages and the conditioner wired into one model, and sampling with it.

`ldmkit.load(path)` (ldmkit/__init__.py) is the one loader: ldmkit files, CompVis checkpoints and
diffusers folders alike.
"""

from ldmkit.pipeline.checkpoint import load_ldm
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.metadata import read_params, save_png
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig

__all__ = ["LDMConfig", "LatentDiffusion", "Pipeline", "load_ldm", "read_params", "save_png"]
