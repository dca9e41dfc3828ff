import pytest
import torch


@pytest.fixture
def randomize():
    """Overwrite every parameter with seeded random values (CompVis' zero-initialised layers included)."""

    def fill(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else p[0].numel() ** -0.5))
        return module.eval()

    return fill
