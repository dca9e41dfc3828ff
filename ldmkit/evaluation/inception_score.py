"""Inception Score (Salimans et al., 2016): exp E_x KL(p(y|x) || p(y)), over `splits` equal parts.

    IS = exp( mean_x sum_y p(y|x) (log p(y|x) - log p(y)) ),   p(y) = mean_x p(y|x) within the split

computed in float64 from logits; reported as the mean and (population) standard deviation over
10 splits, as the reference implementations. The samples are split in the order given (they are
i.i.d. draws already; torch-fidelity shuffles with a fixed seed first, which changes only the std).
Its range is [1, number of classes]: 1 when every sample gets the same distribution, the number of
classes when each is classified with certainty and all classes are equally frequent.
"""

from __future__ import annotations

import torch

from ldmkit.errors import ShapeError

SPLITS = 10


def inception_score(logits: torch.Tensor, splits: int = SPLITS) -> tuple[float, float]:
    """(mean, std) of the Inception Score of (N, K) class logits over `splits` consecutive parts."""
    if logits.ndim != 2 or logits.shape[0] < splits:
        raise ShapeError(f"Inception Score needs (N, K) logits with N >= splits = {splits}, got {tuple(logits.shape)}")
    log_p = logits.detach().to("cpu", torch.float64).log_softmax(dim=1)  # (N, K)
    n = log_p.shape[0]
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]  # (n / splits, K)
        p = part.exp()
        log_marginal = p.mean(0).log()  # (K,)
        terms = torch.where(p > 0, p * (part - log_marginal), 0.0)  # 0 log 0 = 0, even where p(y) underflows
        kl = terms.sum(1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))
