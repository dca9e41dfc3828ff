"""The version of ldmkit: one home, read by the package, PNG metadata and exported folders."""

__version__ = "0.1.0"
