"""REPORT.md and its plots for experiments/paper_claims.py, rebuilt from whatever part JSONs exist."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import _plots  # experiments/_plots.py
from _claims_checks import checks  # experiments/_claims_checks.py
from _claims_parts import SAMPLER_NAMES  # experiments/_claims_parts.py


def read_parts(runs: Path) -> dict:
    def read(pattern: str) -> list[dict]:
        found = [json.loads(p.read_text()) for p in sorted(runs.glob(pattern))]
        return sorted(found, key=lambda d: d["settings"].get("f", 0))

    floor = runs / "floor.json"
    return {"recon": [p for d in read("recon-f*.json") for p in d["points"]], "fig6": read("fig6-f*.json"),
            "fig7": read("fig7-f*.json"), "samplers": read("samplers.json"), "guidance": read("guidance.json"),
            "floor": json.loads(floor.read_text()) if floor.is_file() else {}, "all": read("*-f*.json") + read(
                "samplers.json") + read("guidance.json")}


def num(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]) + "\n"


def copy_if_there(source: Path, target: Path) -> bool:
    """Copy a plot into the report's folder, if it was made (and is not there already: --report-dir = --runs)."""
    if source.is_file() and not (target.exists() and source.samefile(target)):
        shutil.copy(source, target)
    return target.is_file()


def sampler_name(settings: dict) -> str:
    """The sampler a part's settings name (the first report's parts, which did not record it, used DDIM)."""
    return SAMPLER_NAMES.get(settings.get("sampler", "ddim"), settings.get("sampler", "ddim"))


def floor_of(parts: dict, n: int) -> float | None:
    return parts["floor"].get(str(n), {}).get("fd")


def setup_section(parts: dict) -> str:
    processes: dict[tuple, list[dict]] = {}  # (command, start) -> the metas of the JSONs it wrote
    for d in parts["all"]:
        processes.setdefault((d["meta"]["command"], d["meta"]["started"]), []).append(d["meta"])
    runs = []
    for (command, started), metas in sorted(processes.items(), key=lambda kv: kv[0][1]):
        last = max(metas, key=lambda m: m.get("finished", ""))
        runs.append([f"`{command}`", started, last.get("finished", "–"), last["threads"],
                     last.get("OMP_NUM_THREADS") or "unset",
                     f"{last['load_average_start'][0]:.1f} → {last.get('load_average_end', [0.0])[0]:.1f}"])
    cpu = next((d["meta"]["cpu"] + f", {d['meta']['cores']} cores, torch {d['meta']['torch']}, "
                f"device {d['meta']['device']}" for d in parts["all"]), "–")
    floors = [[n, f"{v['subsets']} random subsets of the {v['pool']}", f"{v['fd']:.2f} ± {v['fd_std']:.2f}",
               f"{v['kid']:.4f} ± {v['kid_std']:.4f}"] for n, v in sorted(parts["floor"].items(),
                                                                          key=lambda kv: int(kv[0]))]
    text = ("## Setup\n\n"
            f"Machine: {cpu}. Processes (each part's JSON records the command that wrote it; the load average "
            "is the 1-minute figure at the start and the last write, 2 cores in all):\n\n"
            + table(["command", "started", "last write", "torch threads", "OMP_NUM_THREADS", "load average"], runs)
            + "\nMetrics: FD-EffNet and KID-EffNet, i.e. Fréchet distance and KID in the feature space of ImageNet "
              "EfficientNet-Lite0 (1280-d, `ldmkit.evaluation`), **not FID**: the values are not comparable to the "
              "paper's. Samples are compared with the cached statistics of the 64 px training split; sample i "
              "starts from seed i everywhere. With a few hundred samples the FD is biased upwards, so compare "
              "values only within one table (same sample count). The floor: real validation emoji (unseen in "
              "training) scored the same way:\n\n")
    if floors:
        text += table(["samples", "real validation images", "FD-EffNet (mean ± std over subsets)",
                       "KID-EffNet (first subset)"], floors)
    return text + "\n"


def recon_section(parts: dict, out: Path, runs: Path) -> str:
    rows = sorted(parts["recon"], key=lambda r: r["f"])
    if not rows:
        return "## 1. First stages (Tab. 8 analogue)\n\nNot run yet (`--parts recon`).\n\n"
    _plots.reconstruction(rows, out / "recon.png")
    body = []
    for r in rows:
        shape = "×".join(str(s) for s in r["latent_shape"])
        ratio = 64 * 64 * 3 / (r["latent_shape"][0] * r["latent_shape"][1] * r["latent_shape"][2])
        seconds = r.get("train_seconds")
        trained = f"{r.get('step', '–')} steps, " + (f"{seconds / 60:.1f} min" if seconds else "time not recorded")
        body.append([r["f"], f"`{Path(r['checkpoint']).parent.parent}`" if "checkpoint" in r else "–", shape,
                     f"{ratio:.0f}×", trained + (" (reused)" if r["reused"] else ""), num(r["psnr"]),
                     num(r["ssim"], 3), num(r["perceptual"], 3), num(r["rfd"]), num(r["rkid"], 4)])
        copy_if_there(runs / f"recon-f{r['f']}.png", out / f"recon-f{r['f']}.png")
    no_gan = [r["f"] for r in rows if r.get("disc_start") and r.get("step", 0) < r["disc_start"]]
    text = ("## 1. First stages (Tab. 8 analogue)\n\nKL autoencoders of `configs/autoencoder/kl-f{f}-emoji64.yaml` "
            "on the 413 validation images (64 px). rFD/rKID: reconstructions against the originals. f = 1 is the "
            "identity (exact by construction, not measured).\n\n![first stages](recon.png)\n\n"
            + table(["f", "run", "latent", "compression", "training", "PSNR (dB)", "SSIM", "perceptual", "rFD",
                     "rKID"], body))
    if no_gan:
        text += (f"\nThe adversarial loss (from step `loss.disc_start`) never started for f = "
                 f"{', '.join(map(str, no_gan))}: within the budget these are L1 + perceptual + KL autoencoders.\n")
    grids = " ".join(f"![f={r['f']}](recon-f{r['f']}.png)" for r in rows)
    return text + f"\nOriginals (top) over reconstructions (bottom), f = {', '.join(str(r['f']) for r in rows)}:\n\n" \
        + grids + "\n\n"


def fig6_section(parts: dict, out: Path, runs: Path) -> str:
    runs6 = [d for d in parts["fig6"] if d["points"]]
    if not runs6:
        return "## 2. FD against training time (Fig. 6 analogue)\n\nNot run yet (`--parts fig6`).\n\n"
    s = runs6[0]["settings"]
    _plots.fd_against_time({d["settings"]["f"]: d["points"] for d in runs6}, floor_of(parts, s["samples"]),
                           out / "fig6.png")
    marks = sorted({p["minutes_planned"] for d in runs6 for p in d["points"]})
    rows = []
    for d in runs6:
        by_mark = {p["minutes_planned"]: p for p in d["points"]}
        model, last = d.get("model", {}), d["points"][-1]
        rows.append([d["settings"]["f"], "×".join(map(str, model.get("latent_shape", []))),
                     num(model.get("unet_parameters", 0) / 1e6), num(d.get("train_images_per_second"), 1),
                     last["step"], *[num(by_mark[m]["fd"]) if m in by_mark else "–" for m in marks],
                     f"{last['kid']:.4f} ± {last['kid_std']:.4f}"])
    grids = "\n".join(f"- LDM-{f}: ![LDM-{f}](fig6-f{f}.png)" for f in (d["settings"]["f"] for d in runs6)
                      if copy_if_there(runs / f"fig6-f{f}.png", out / f"fig6-f{f}.png"))
    return ("## 2. FD against training time (Fig. 6 analogue)\n\n"
            f"Every LDM trains for {s['ldm_minutes']:g} min of wall-clock time (`train.max_minutes`, one thread, "
            f"latent caching excluded) with the same UNet (32 channels, levels ×1/×2/×4, one ResBlock each, "
            f"attention at the lowest level; LDM-16's 4×4 latent reaches 1×1 there, where its 128 channels "
            f"still give each GroupNorm group 4 values; LDM-32's 2×2 latent has two levels of 64 channels), the "
            f"training recipe of `experiments/_budgeted_runs.py` "
            f"(overrides: {', '.join(s.get('overrides') or []) or 'none'}; {centring(runs6)}) and stops for a "
            f"checkpoint at "
            f"{s['checkpoints']} evenly spaced times. FD-EffNet of {s['samples']} samples "
            f"({sampler_name(s)}, {s['steps']} steps, EMA weights) at each checkpoint; the x axis is the training "
            f"time stored in the checkpoint.\n\n![FD against training time](fig6.png)\n\n"
            + table(["f", "latent", "UNet (M params)", "train img/s", "steps in budget",
                     *[f"FD @ {m:g} min" for m in marks], "KID at the end"], rows)
            + f"\nSamples (seeds 0–7), a row per checkpoint, earliest on top:\n\n{grids}\n\n")


def centring(runs6: list[dict]) -> str:
    """Which LDMs trained on centred latents (runs before 2026-12-05 night recorded nothing: none did)."""
    fs = [d["settings"]["f"] for d in runs6 if d["settings"].get("centred")]
    if not fs:
        return "latents not centred"
    return f"latents centred per channel for f = {', '.join(map(str, fs))}, the first stage's biases holding the shift"


def fig7_section(parts: dict, out: Path) -> str:
    runs7 = [d for d in parts["fig7"] if d["points"]]
    if not runs7:
        return "## 3. FD against sampling throughput (Fig. 7 analogue)\n\nNot run yet (`--parts fig7`).\n\n"
    n = runs7[0]["settings"]["samples"]
    _plots.fd_against_throughput({d["settings"]["f"]: d["points"] for d in runs7}, floor_of(parts, n),
                                 out / "fig7.png")
    rows = [[d["settings"]["f"], p["steps"], num(p["images_per_second"], 2), num(p["fd"]),
             f"{p['kid']:.4f} ± {p['kid_std']:.4f}"] for d in runs7 for p in sorted(d["points"],
                                                                                   key=lambda p: p["steps"])]
    return ("## 3. FD against sampling throughput (Fig. 7 analogue)\n\n"
            f"The final checkpoint of each LDM-f; {n} samples per point, {sampler_name(runs7[0]['settings'])}; "
            "throughput = images per second of "
            f"sampling and decoding (batches of {runs7[0]['points'][0]['batch']}, one thread; the feature network "
            "not counted).\n\n![FD against throughput](fig7.png)\n\n"
            + table(["f", "steps", "images/s", "FD-EffNet", "KID-EffNet"], rows) + "\n")


def samplers_section(parts: dict, out: Path) -> str:
    if not parts["samplers"] or not parts["samplers"][0]["points"]:
        return "## 4. Samplers\n\nNot run yet (`--parts samplers`).\n\n"
    d = parts["samplers"][0]
    series: dict[str, list[dict]] = {}
    for p in d["points"]:
        series.setdefault(SAMPLER_NAMES[p["sampler"]], []).append(p)
    _plots.fd_against_steps(series, floor_of(parts, d["settings"]["samples"]), out / "samplers.png")
    steps = sorted({p["steps"] for p in d["points"]})
    rows = [[s, *[next((num(p["fd"]) + f" ({p['images_per_second']:.1f}/s)" for p in points if p["steps"] == s), "–")
                  for points in series.values()]] for s in steps]
    return ("## 4. Samplers\n\n"
            f"LDM-{d['settings']['f']} at the end of its budget; FD-EffNet of {d['settings']['samples']} samples "
            "(images/s in brackets).\n\n![FD against steps](samplers.png)\n\n"
            + table(["steps", *series], rows) + "\n")


def guidance_section(parts: dict, out: Path, runs: Path) -> str:
    if not parts["guidance"] or not parts["guidance"][0]["points"]:
        return "## 5. Classifier-free guidance\n\nNot run yet (`--parts guidance`).\n\n"
    d = parts["guidance"][0]
    points = sorted(d["points"], key=lambda p: p["guidance"])
    _plots.fd_against_guidance(points, floor_of(parts, d["settings"]["samples"]), out / "guidance.png")
    samples = copy_if_there(runs / "guidance.png", out / "guidance-samples.png")
    rows = [[f"{p['guidance']:g}", num(p["fd"]), f"{p['kid']:.4f} ± {p['kid_std']:.4f}", num(p["precision"], 3),
             num(p["recall"], 3), num(p["images_per_second"], 2)] for p in points]
    return ("## 5. Classifier-free guidance\n\n"
            f"The class-conditional model `{d['settings']['checkpoint']}` (step {d.get('step', '–')}); "
            f"{d['settings']['samples']} samples per scale, {sampler_name(d['settings'])} {d['settings']['steps']} "
            "steps, each sample "
            "conditioned on the class of a random training image (as the reference).\n\n"
            "![FD against guidance](guidance.png)\n\n"
            + table(["scale", "FD-EffNet", "KID-EffNet", "precision", "recall", "images/s"], rows)
            + ("\nSamples (seeds 0–7, same classes), a row per scale, the smallest on top:\n\n"
               "![samples per guidance scale](guidance-samples.png)\n" if samples else "") + "\n")


def write_report(runs: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    parts = read_parts(runs)
    text = ("# The paper's central claims at small scale\n\n"
            f"Written by `experiments/paper_claims.py` on {time.strftime('%Y-%m-%d %H:%M')} from the measurements "
            f"in `{runs}` (each part's JSON). Every number here was measured in those runs; none is copied from "
            "the paper. 64 px OpenMoji, CPU only.\n\n"
            + setup_section(parts) + recon_section(parts, out, runs) + fig6_section(parts, out, runs)
            + fig7_section(parts, out) + samplers_section(parts, out) + guidance_section(parts, out, runs)
            + checks(parts))
    path = out / "REPORT.md"
    path.write_text(text)
    return path
