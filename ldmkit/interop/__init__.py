"""Adapters between ldmkit's models and other codebases' formats (diffusers, CompVis)."""
