"""Shared test setup: tiny, CPU-only, deterministic; the OpenMoji render cache is shared.

`make test` runs two pytest workers of one torch thread each: both cores stay busy and small ops
never wait on a second OpenMP thread that another process has taken.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def emoji32():
    """The OpenMoji training split at 32 px (rendered once into the user's ldmkit cache)."""
    from ldmkit.data.openmoji import OpenMojiDataset

    return OpenMojiDataset(32, "train")
