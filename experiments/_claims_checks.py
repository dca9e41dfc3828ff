"""The report's last section: each claim of the paper next to what the measurements say, decided by a
stated comparison of the measured numbers, no judgement beyond it.

An FD comparison counts only when the gap exceeds twice the FD spread of real images at the same
sample size (floor.json: FD of random subsets of the validation images); smaller gaps are reported
as within noise.
"""

from __future__ import annotations

REPRODUCED, NOT_REPRODUCED, NOISE = "**reproduced**", "**not reproduced**", "**within noise**"


def _fmt(values: dict, digits: int = 2) -> str:
    return ", ".join(f"{k}: {v:.{digits}f}" for k, v in values.items())


def _decide(gap: float, noise: float) -> str:
    """gap > 0 favours the claim; |gap| <= noise decides nothing."""
    if abs(gap) <= noise:
        return NOISE
    return REPRODUCED if gap > 0 else NOT_REPRODUCED


def _noise(parts: dict, n: int) -> float:
    return 2 * parts["floor"].get(str(n), {}).get("fd_std", 0.0)


def recon_checks(rows: list[dict]) -> list[str]:
    rows = sorted(rows, key=lambda r: r["f"])
    if len(rows) < 2:
        return []
    falls = all(a["psnr"] > b["psnr"] for a, b in zip(rows, rows[1:]))
    grows = all(a["rfd"] < b["rfd"] for a, b in zip(rows, rows[1:]))
    psnr, rfd = ({"f=%d" % r["f"]: r[key] for r in rows} for key in ("psnr", "rfd"))
    return [f"Tab. 8, reconstruction gets worse as f grows. PSNR lower at every larger f: "
            f"{REPRODUCED if falls else NOT_REPRODUCED} ({_fmt(psnr)} dB); rFD higher at every larger f: "
            f"{REPRODUCED if grows else NOT_REPRODUCED} ({_fmt(rfd)})."]


def fig6_checks(runs6: list[dict], parts: dict) -> list[str]:
    final = {d["settings"]["f"]: d["points"][-1]["fd"] for d in runs6 if d["points"]}
    first = {d["settings"]["f"]: d["points"][0]["fd"] for d in runs6 if d["points"]}
    if len(final) < 2:
        return []
    noise = _noise(parts, runs6[0]["settings"]["samples"])
    lines = []
    moderate, other = [f for f in final if f in (4, 8, 16)], [f for f in final if f not in (4, 8, 16)]
    if moderate and other:
        gap = min(final[f] for f in other) - min(final[f] for f in moderate)
        lines.append(f"Fig. 6, at equal training time a moderate f (4 to 16) gives better samples than f = 1, 2 or 32 "
                     f"(best final FD of f in 4..16 below that of the others): {_decide(gap, noise)} "
                     f"({_fmt({f'LDM-{f}': v for f, v in sorted(final.items())})}; noise ±{noise:.2f}).")
    order = sorted(final)
    falls = all(final[a] > final[b] + noise for a, b in zip(order, order[1:]))
    tested = "tested here" if 32 in final else "not tested here"
    lines.append(f"Fig. 6 (observation; the paper finds f = 32 too lossy, {tested}): the final FD "
                 f"{'falls' if falls else 'does not fall'} by more than the noise at every larger f up to f = "
                 f"{order[-1]}, so {'the largest f tested is the best' if falls else 'the trend is not monotonic'}.")
    if 1 in final:
        gap = final[1] - max(v for f, v in final.items() if f != 1)
        lines.append(f"Fig. 6, LDM-1 has the worst FD at the end of the budget: {_decide(gap, noise)}.")
        gap = first[1] - max(v for f, v in first.items() if f != 1)
        lines.append(f"Fig. 6, already at the first checkpoint every latent model beats LDM-1: {_decide(gap, noise)} "
                     f"({_fmt({f'LDM-{f}': v for f, v in sorted(first.items())})}).")
    return lines


def fig7_checks(runs7: list[dict], parts: dict) -> list[str]:
    series = {d["settings"]["f"]: {p["steps"]: p for p in d["points"]} for d in runs7 if d["points"]}
    if len(series) < 2:
        return []
    noise = _noise(parts, runs7[0]["settings"]["samples"])
    fs = sorted(series)
    steps = sorted(set.intersection(*[set(s) for s in series.values()]))
    faster = all(series[a][s]["images_per_second"] < series[b][s]["images_per_second"]
                 for s in steps for a, b in zip(fs, fs[1:]))
    lines = [f"Fig. 7, throughput grows with f at equal steps (every larger f faster at every step count): "
             f"{REPRODUCED if faster else NOT_REPRODUCED}."]
    best = {f: min(s.values(), key=lambda p: p["fd"]) for f, s in series.items()}
    moderate, other = [f for f in fs if f in (4, 8, 16)], [f for f in fs if f not in (4, 8, 16)]
    if moderate and other:
        winner = min(best, key=lambda f: best[f]["fd"])
        gap = min(best[f]["fd"] for f in other) - min(best[f]["fd"] for f in moderate)
        lines.append(f"Fig. 7, the best FD over all (f, steps) comes from f in 4..16: {_decide(gap, noise)} (best: "
                     f"LDM-{winner} at {best[winner]['steps']} steps, FD {best[winner]['fd']:.2f}, "
                     f"{best[winner]['images_per_second']:.2f} img/s; noise ±{noise:.2f}).")
    if 1 in series and steps:
        s = max(steps)
        ratio = {f"LDM-{f}": series[f][s]["images_per_second"] / series[1][s]["images_per_second"] for f in fs[1:]}
        lines.append(f"Fig. 7, speed-up over pixel space at {s} steps: {_fmt(ratio, 1)}×.")
    return lines


def sampler_checks(d: dict, parts: dict) -> list[str]:
    by: dict[int, dict[str, float]] = {}
    for p in d["points"]:
        by.setdefault(p["steps"], {})[p["sampler"]] = p["fd"]
    few = [s for s in sorted(by) if s <= 20 and {"ddim", "dpmpp_2m"} <= set(by[s])]
    if not few:
        return []
    noise = _noise(parts, d["settings"]["samples"])
    verdicts = {s: _decide(by[s]["ddim"] - by[s]["dpmpp_2m"], noise) for s in few}
    overall = REPRODUCED if all(v == REPRODUCED for v in verdicts.values()) else (
        NOT_REPRODUCED if any(v == NOT_REPRODUCED for v in verdicts.values()) else NOISE)
    words = {REPRODUCED: "DPM++ better", NOT_REPRODUCED: "DDIM better", NOISE: "within noise"}
    return [f"Samplers, DPM-Solver++(2M) beats DDIM at every step count ≤ 20: {overall} ("
            + "; ".join(f"{s} steps: DDIM {by[s]['ddim']:.2f}, DPM++ {by[s]['dpmpp_2m']:.2f}, {words[verdicts[s]]}"
                        for s in few) + f"; noise ±{noise:.2f})."]


def guidance_checks(d: dict, parts: dict) -> list[str]:
    fd = {p["guidance"]: p["fd"] for p in d["points"]}
    guided = [s for s in fd if s > 1.0]
    if 1.0 not in fd or not guided:
        return []
    best = min(guided, key=fd.get)
    noise = _noise(parts, d["settings"]["samples"])
    return [f"Guidance (Tab. 3: s = 1.5 improves the class-conditional FID), some scale > 1 gives a lower FD than "
            f"no guidance: {_decide(fd[1.0] - fd[best], noise)} (best s > 1: {best:g}, FD {fd[best]:.2f}; "
            f"s = 1: {fd[1.0]:.2f}; noise ±{noise:.2f})."]


def checks(parts: dict) -> str:
    lines = recon_checks(parts["recon"]) + fig6_checks(parts["fig6"], parts) + fig7_checks(parts["fig7"], parts)
    if parts["samplers"]:
        lines += sampler_checks(parts["samplers"][0], parts)
    if parts["guidance"]:
        lines += guidance_checks(parts["guidance"][0], parts)
    if not lines:
        return ""
    return ("## Claims against measurements\n\nEach line names the comparison that decides it. An FD gap counts "
            "only when it exceeds the noise: twice the standard deviation of FD over random subsets of real "
            "validation images of the same size (the floor table above; an underestimate, as the subsets "
            "overlap).\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
