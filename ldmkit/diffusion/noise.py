"""Per-sample random draws: the one home for turning generators into noise and timesteps.

Sample i of a batch draws only from generators[i], so an image depends on its own seed and not
on the batch size or its position in the batch. Each draw is made on the generator's device and
then moved to `device`, so CPU generators give the same numbers on any device (as diffusers'
`randn_tensor` does with a list of generators, whose numbers these match).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ldmkit.errors import LdmkitError

RandomSource = torch.Generator | Sequence[torch.Generator]


def seeded_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample, seeded with seeds[i]."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def check_generators(generators: Sequence[torch.Generator] | None, batch: int, what: str) -> list[torch.Generator]:
    """The list of per-sample generators, or a clear error when it is missing or of the wrong length."""
    if generators is None or isinstance(generators, torch.Generator):
        raise LdmkitError(
            f"{what} needs a list of {batch} per-sample torch.Generators (e.g. "
            "ldmkit.diffusion.noise.seeded_generators(seeds)), one per image of the batch"
        )
    generators = list(generators)
    if len(generators) != batch:
        raise LdmkitError(f"{what} got {len(generators)} generators for a batch of {batch}; pass one per sample")
    return generators


def randn_like_per_sample(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal noise of `shape` (B, ...), row i drawn from generators[i]."""
    generators = check_generators(generators, shape[0], "randn_like_per_sample")
    row = (1, *shape[1:])
    return torch.cat(
        [torch.randn(row, generator=g, device=g.device, dtype=dtype).to(device) for g in generators]
    )  # (B, ...)


def randint_per_sample(
    high: int, generators: Sequence[torch.Generator], device: torch.device | str
) -> torch.Tensor:
    """Integers (B,) uniform in [0, high), entry i drawn from generators[i]."""
    return torch.cat(
        [torch.randint(0, high, (1,), generator=g, device=g.device).to(device) for g in generators]
    )


def randn_from(
    shape: Sequence[int], source: RandomSource, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """Normal noise from one generator (drawn at once) or from per-sample generators."""
    if isinstance(source, torch.Generator):
        return torch.randn(tuple(shape), generator=source, device=source.device, dtype=dtype).to(device)
    return randn_like_per_sample(shape, source, device, dtype)


def randint_from(high: int, batch: int, source: RandomSource, device: torch.device | str) -> torch.Tensor:
    """Integers (batch,) uniform in [0, high) from one generator or from per-sample generators."""
    if isinstance(source, torch.Generator):
        return torch.randint(0, high, (batch,), generator=source, device=source.device).to(device)
    return randint_per_sample(high, check_generators(source, batch, "randint_from"), device)
