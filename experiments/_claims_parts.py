"""The parts of experiments/paper_claims.py. Each writes RUNS/<part>[-f<f>].json (after every measured
point, so an interrupted part keeps what it measured and a rerun measures only what is missing) and
sample or reconstruction grids next to it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from _budgeted_runs import (
    centred,
    checkpoint_at,
    ensure_autoencoder,
    ldm_run,
    time_points,
    train_until,
)
from _fd_measure import Judge, measure, reconstruction_quality
from PIL import Image

import ldmkit
from ldmkit.checkpoint import (
    STATE_FILE,
    load_state,
    resolve_model_file,
    write_text_atomic,
)
from ldmkit.config import load_config
from ldmkit.data.images import make_grid
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.errors import LdmkitError
from ldmkit.evaluation import SampleFeatures
from ldmkit.evaluation.generation import DataConditions
from ldmkit.evaluation.reference import reference_dataset
from ldmkit.training.autoencoder import AutoencoderRunConfig

PREVIEW = 8  # samples per row of the grids
SAMPLER_NAMES = {"ddim": "DDIM", "plms": "PLMS", "dpmpp_2m": "DPM-Solver++(2M)", "euler_a": "Euler ancestral"}


class PartFile:
    """A part's JSON: settings and meta, plus measured points; `known(key)` finds a point measured before."""

    def __init__(self, path: Path, header: dict, redo: bool):
        self.path, self.header = path, header
        old = json.loads(path.read_text()) if path.is_file() and not redo else {}
        same = all(old.get("settings", {}).get(k) == v for k, v in header["settings"].items())
        self.points: list[dict] = old.get("points", []) if same else []
        self.extra: dict = {}

    def known(self, **key) -> dict | None:
        return next((p for p in self.points if all(p.get(k) == v for k, v in key.items())), None)

    def add(self, point: dict) -> None:
        self.points.append(point)
        self.write()

    def write(self) -> None:
        meta = {**self.header["meta"], "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "load_average_end": list(os.getloadavg())}
        write_text_atomic(self.path, json.dumps({**self.header, "meta": meta, **self.extra, "points": self.points},
                                                indent=1) + "\n")


def checkpoint_facts(checkpoint: Path) -> dict:
    state = load_state(checkpoint / STATE_FILE)
    return {"checkpoint": str(checkpoint), "step": int(state["step"]), "train_seconds": state.get("train_seconds")}


def save_rows(rows: list[Path], out: Path) -> None:
    """Stack the row images (one PNG per setting) into one grid PNG."""
    images = [Image.open(r) for r in rows if r.is_file()]
    if not images:
        return
    grid = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        grid.paste(image, (0, top))
        top += image.height
    grid.save(out)


def row(images: torch.Tensor, path: Path) -> Path:
    make_grid(images, nrow=PREVIEW).save(path)
    return path


def part_recon(args, meta: dict, out: Path) -> None:
    judge = Judge.of_split("val", args.device_)
    for f in [f for f in args.fs if f != 1]:
        reused = f == 4 and bool(args.ae_f4)
        settings = {"f": f, "ae_minutes": None if reused else args.ae_minutes, "first_stage": None}
        spec = ensure_autoencoder(f, args)
        settings["first_stage"] = spec
        part = PartFile(out / f"recon-f{f}.json", {"part": "recon", "settings": settings, "meta": meta}, args.redo)
        checkpoint = resolve_model_file(spec).parent
        if part.known(f=f, checkpoint=str(checkpoint)):
            print(f"[recon f={f}] measured before: {part.path}")
            continue
        start = time.perf_counter()
        result, grid = reconstruction_quality(spec, judge)
        facts = checkpoint_facts(checkpoint) if (checkpoint / STATE_FILE).is_file() else {"checkpoint": str(checkpoint)}
        run_config = Path(spec) / "config.yaml"  # the adversarial loss starts at loss.disc_start
        disc_start = load_config(AutoencoderRunConfig, run_config, []).loss.disc_start if run_config.is_file() else None
        make_grid(grid, nrow=PREVIEW).save(out / f"recon-f{f}.png")
        part.add({"f": f, "reused": reused, **facts, "disc_start": disc_start, **result,
                  "eval_seconds": round(time.perf_counter() - start, 1)})
        print(f"[recon f={f}] PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}, rFD {result['rfd']:.2f}",
              flush=True)


def model_facts(pipe) -> dict:
    model = pipe.model
    return {"latent_shape": list(model.latent_shape(64, 64)), "unet_parameters": sum(
        p.numel() for p in model.unet.parameters()), "scale_factor": model.config.scale_factor}


def training_rate(run_dir: Path) -> float | None:
    """Mean training images/s over the logged intervals of a run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "metrics.jsonl").is_file() else []
    rates = [r["images_per_second"] for r in rows if "images_per_second" in r]
    return sum(rates) / len(rates) if rates else None


def part_fig6(args, meta: dict, out: Path, judge: Judge) -> None:
    for f in args.fs:
        settings = {"f": f, "ldm_minutes": args.ldm_minutes, "checkpoints": args.checkpoints, "samples":
                    args.fd_samples, "steps": args.fd_steps, "sampler": args.sampler, "ae_minutes": args.ae_minutes,
                    "overrides": args.overrides, "centred": centred(f)}
        part = PartFile(out / f"fig6-f{f}.json", {"part": "fig6", "settings": settings, "meta": meta}, args.redo)
        rows = []
        for k, minutes in enumerate(time_points(args)):
            checkpoint = train_until(f, minutes, args)
            rows.append(out / f"fig6-f{f}-{k}.png")
            if part.known(minutes_planned=minutes, checkpoint=str(checkpoint)):
                continue
            pipe = ldmkit.load(checkpoint, device=str(args.device_))
            result, preview = measure(pipe, judge, args.fd_samples, args.fd_steps, args.sampler, batch=args.batch,
                                      keep=PREVIEW)
            row(preview, rows[-1])
            part.extra = {"model": model_facts(pipe), "train_images_per_second": training_rate(ldm_run(f, args))}
            part.add({"minutes_planned": minutes, **checkpoint_facts(checkpoint), **result})
            save_rows(rows, out / f"fig6-f{f}.png")
            print(f"[fig6 f={f}] {minutes:g} min (step {part.points[-1]['step']}): FD {result['fd']:.2f}, "
                  f"KID {result['kid']:.4f}", flush=True)


def final_checkpoint(f: int, args) -> Path:
    found = checkpoint_at(ldm_run(f, args), args.ldm_minutes)
    if found is None:
        raise LdmkitError(f"LDM-{f} has no checkpoint with {args.ldm_minutes:g} min of training in "
                          f"{ldm_run(f, args)}; run `--parts fig6 --fs {f}` first (same --runs and --ldm-minutes)")
    return found


def sweep(part: PartFile, pipe, judge: Judge, args, settings: list[dict], label, rows_out: Path | None,
          conditions=None) -> None:
    """Measure every setting (steps, sampler, guidance) not measured before; one preview row each."""
    rows = []
    for i, s in enumerate(settings):
        rows.append(rows_out.with_name(f"{rows_out.stem}-{i}.png") if rows_out else None)
        if part.known(**s):
            continue
        result, preview = measure(pipe, judge, s["samples"], s["steps"], s.get("sampler", "ddim"),
                                  s.get("guidance", 1.0), args.batch, conditions, keep=PREVIEW if rows_out else 0)
        if rows_out:
            row(preview, rows[-1])
            save_rows(rows, rows_out)
        part.add({**s, **result})
        print(f"[{part.header['part']}] {label(s)}: FD {result['fd']:.2f}, {result['images_per_second']:.2f} img/s",
              flush=True)


def part_fig7(args, meta: dict, out: Path, judge: Judge) -> None:
    for f in args.fs:
        checkpoint = final_checkpoint(f, args)
        settings = {"f": f, "samples": args.fig7_samples, "steps": args.fig7_steps, "sampler": args.sampler,
                    "checkpoint": str(checkpoint)}
        part = PartFile(out / f"fig7-f{f}.json", {"part": "fig7", "settings": settings, "meta": meta}, args.redo)
        pipe = ldmkit.load(checkpoint, device=str(args.device_))
        part.extra = {"model": model_facts(pipe), **checkpoint_facts(checkpoint)}
        grid = [{"steps": s, "samples": args.fig7_samples, "sampler": args.sampler} for s in args.fig7_steps]
        sweep(part, pipe, judge, args, grid, lambda s, f=f: f"f={f}, {s['steps']} {args.sampler} steps", None)
        part.write()


def part_samplers(args, meta: dict, out: Path, judge: Judge) -> None:
    checkpoint = final_checkpoint(args.sampler_f, args)
    settings = {"f": args.sampler_f, "samples": args.fd_samples, "steps": args.sampler_steps,
                "checkpoint": str(checkpoint)}
    part = PartFile(out / "samplers.json", {"part": "samplers", "settings": settings, "meta": meta}, args.redo)
    pipe = ldmkit.load(checkpoint, device=str(args.device_))
    part.extra = {"model": model_facts(pipe), **checkpoint_facts(checkpoint)}
    grid = [{"sampler": name, "steps": s, "samples": args.fd_samples} for name in SAMPLER_NAMES
            for s in args.sampler_steps]
    sweep(part, pipe, judge, args, grid, lambda s: f"{SAMPLER_NAMES[s['sampler']]}, {s['steps']} steps", None)
    part.write()


def part_guidance(args, meta: dict, out: Path, judge: Judge) -> None:
    try:
        checkpoint = resolve_model_file(args.class_run).parent
    except LdmkitError as err:
        raise LdmkitError(f"--class-run {args.class_run}: {err}; train it first (experiments/faithfulness.py "
                          "or `ldmkit train configs/ldm/class-emoji64.yaml`)") from err
    pipe = ldmkit.load(checkpoint, device=str(args.device_))
    if pipe.config.conditioning.kind != "class":
        raise LdmkitError(f"--class-run {args.class_run} is a '{pipe.config.conditioning.kind}' model, not a "
                          "class-conditional one")
    settings = {"samples": args.fd_samples, "steps": args.guidance_steps, "sampler": args.sampler,
                "scales": args.scales, "checkpoint": str(checkpoint)}
    part = PartFile(out / "guidance.json", {"part": "guidance", "settings": settings, "meta": meta}, args.redo)
    facts = checkpoint_facts(checkpoint) if (checkpoint / STATE_FILE).is_file() else {"checkpoint": str(checkpoint)}
    part.extra = {"model": model_facts(pipe), **facts, "conditions": "the label of a random training image per sample"}
    conditions = DataConditions(reference_dataset("openmoji", pipe.config.image_size, "train")[0], pipe)
    grid = [{"guidance": g, "steps": args.guidance_steps, "samples": args.fd_samples, "sampler": args.sampler}
            for g in args.scales]
    sweep(part, pipe, judge, args, grid, lambda s: f"guidance {s['guidance']:g}", out / "guidance.png", conditions)
    part.write()


def part_floor(args, out: Path, judge: Judge, subsets: int = 5) -> None:
    """FD and KID of n real validation images against the training reference: what a model that draws unseen
    emoji from the data distribution scores at the same sample size. The spread of FD over `subsets` random
    subsets (seeds 0, 1, ...) is the report's noise scale (an underestimate where subsets overlap)."""
    path = out / "floor.json"
    floor = json.loads(path.read_text()) if path.is_file() else {}
    sizes = sorted({args.fd_samples, args.fig7_samples} - {int(n) for n in floor})
    if not sizes:
        return
    dataset = OpenMojiDataset(64, "val")
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # (N, 3, 64, 64)
    features = judge.features(images)
    for n in sizes:
        scores = []
        for seed in range(subsets):
            chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
            scores.append(judge.scores(SampleFeatures(features.features[chosen], features.logits[chosen],
                                                      features.network)))
        fds = torch.tensor([sc["fd"] for sc in scores], dtype=torch.float64)
        floor[str(n)] = {**scores[0], "images": min(n, len(images)), "pool": len(images), "subsets": subsets,
                         "fd": float(fds.mean()), "fd_std": float(fds.std())}
    write_text_atomic(path, json.dumps(floor, indent=1) + "\n")
