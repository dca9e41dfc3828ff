"""The matplotlib figures of experiments/paper_claims.py's report (PNG, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

DPI = 120
FLOOR_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _log_if_wide(ax, which: str, values: list[float]) -> None:
    """A log axis (ticks at 1, 2, 5 x 10^k, plain numbers) when the values span more than a factor 3."""
    values = [v for v in values if v > 0]
    if not values or max(values) / min(values) <= 3:
        return
    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _floor(ax, value: float | None, data: list[float]) -> list[float]:
    """The real-image floor: a line when it is near the data, else only a legend entry (so that it does not
    squash the differences between models); returns the values the axis must show."""
    if value is None:
        return []
    label = f"real val. images: {value:.1f}"
    if data and value < 0.5 * min(data):
        ax.plot([], [], " ", label=label)
        return []
    ax.axhline(value, **FLOOR_STYLE, label=label)
    return [value]


def fd_against_time(series: dict[int, list[dict]], floor: float | None, path: Path) -> Path:
    """Fig. 6: FD-EffNet and KID of each LDM-f against its training time (minutes)."""
    fig, (fd_ax, kid_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for f, points in sorted(series.items()):
        minutes = [p["train_seconds"] / 60 for p in points]
        fd_ax.plot(minutes, [p["fd"] for p in points], marker="o", label=f"LDM-{f}")
        kid_ax.errorbar(minutes, [p["kid"] for p in points], yerr=[p["kid_std"] for p in points], marker="o",
                        capsize=3, label=f"LDM-{f}")
    fds = [p["fd"] for points in series.values() for p in points]
    fd_ax.set(xlabel="training time (min, 1 CPU thread)", ylabel="FD-EffNet (lower is better)",
              title="FD against training time")
    _log_if_wide(fd_ax, "y", fds + _floor(fd_ax, floor, fds))
    kid_ax.set(xlabel="training time (min, 1 CPU thread)", ylabel="KID-EffNet (± std over subsets)",
               title="KID against training time")
    fd_ax.legend()
    kid_ax.legend()
    return _save(fig, path)


def fd_against_throughput(series: dict[int, list[dict]], floor: float | None, path: Path) -> Path:
    """Fig. 7: FD-EffNet against images/s (sampler + decoder) over sampler step counts, a line per f."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for f, points in sorted(series.items()):
        points = sorted(points, key=lambda p: p["steps"])
        x, y = [p["images_per_second"] for p in points], [p["fd"] for p in points]
        ax.plot(x, y, marker="o", label=f"LDM-{f}")
        for p, xi, yi in zip(points, x, y):
            ax.annotate(str(p["steps"]), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set(xlabel="throughput (images/s, sampler + decoder, 1 CPU thread)", ylabel="FD-EffNet",
           title="FD against sampling speed (labels: sampler steps)")
    everything = [p for points in series.values() for p in points]
    fds = [p["fd"] for p in everything]
    _log_if_wide(ax, "x", [p["images_per_second"] for p in everything])
    _log_if_wide(ax, "y", fds + _floor(ax, floor, fds))
    ax.legend()
    return _save(fig, path)


def reconstruction(rows: list[dict], path: Path) -> Path:
    """Tab. 8: PSNR, SSIM and rFD of the first stages against f."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    fs = [r["f"] for r in rows]
    for ax, key, label in zip(axes, ("psnr", "ssim", "rfd"), ("PSNR (dB)", "SSIM", "rFD-EffNet")):
        ax.plot(fs, [r[key] for r in rows], marker="o")
        ax.set(xscale="log", xticks=fs, xticklabels=[str(f) for f in fs], xlabel="f", ylabel=label)
        ax.minorticks_off()
    fig.suptitle("first stages (validation split)")
    return _save(fig, path)


def fd_against_steps(series: dict[str, list[dict]], floor: float | None, path: Path) -> Path:
    """Samplers: FD-EffNet against the number of steps, a line per sampler."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in series.items():
        points = sorted(points, key=lambda p: p["steps"])
        ax.plot([p["steps"] for p in points], [p["fd"] for p in points], marker="o", label=name)
    ax.set(xscale="log", xlabel="sampler steps", ylabel="FD-EffNet", title="FD against steps")
    steps = sorted({p["steps"] for points in series.values() for p in points})
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.xaxis.set_minor_formatter(NullFormatter())
    fds = [p["fd"] for points in series.values() for p in points]
    _log_if_wide(ax, "y", fds + _floor(ax, floor, fds))
    ax.legend()
    return _save(fig, path)


def fd_against_guidance(points: list[dict], floor: float | None, path: Path) -> Path:
    """Guidance: FD-EffNet and KID against the classifier-free guidance scale."""
    points = sorted(points, key=lambda p: p["guidance"])
    scales = [p["guidance"] for p in points]
    fig, (fd_ax, kid_ax) = plt.subplots(1, 2, figsize=(10, 4))
    fd_ax.plot(scales, [p["fd"] for p in points], marker="o")
    _floor(fd_ax, floor, [p["fd"] for p in points])
    fd_ax.set(xlabel="guidance scale", ylabel="FD-EffNet", title="FD against guidance")
    kid_ax.errorbar(scales, [p["kid"] for p in points], yerr=[p["kid_std"] for p in points], marker="o", capsize=3)
    kid_ax.set(xlabel="guidance scale", ylabel="KID-EffNet (± std over subsets)", title="KID against guidance")
    if floor is not None:
        fd_ax.legend()
    return _save(fig, path)
