"""Faithfulness of class-conditional and text-to-image samples to their conditions.

Trains (or loads) the LDMs of configs/ldm/class-emoji64.yaml and configs/ldm/text-emoji64.yaml
on top of a given first stage, samples them (DDPM-200 by default, classifier-free guidance, sample i from seed i)
and measures, in the feature space of ImageNet EfficientNet-Lite0 (1280-d pooled features, the
`effnet` network of ldmkit.evaluation):

- class-conditional: `--per-class` samples of every class, classified by a linear probe (class-
  balanced logistic regression on the frozen features) trained on the OpenMoji training split.
  Reported: the probe's accuracy on the samples against chance (1/10: the samples' classes are
  balanced, so this is also their majority-class rate), and on the real validation images (its
  own accuracy) against their majority-class rate. Its class-balanced accuracy on the validation
  images after the first stage's encoder and decoder is the ceiling of samples: what a model that
  draws images like the unseen ones, as well as its first stage can render them, would score
  (and on training images, what a model that copies them would score);
- text-to-image: samples for `--prompts` captions of the training split and of the validation
  split (emoji never seen in training). Each sample ranks a gallery (every training image, plus the
  validation images of the validation prompts) by cosine similarity; a hit is the prompt's own
  emoji among the 5 nearest. Reported against chance, 5 / gallery size, and against an empirical
  control: how often the emoji of another prompt (the next one in the list) is among those 5.

Runs live in RUNS/class-emoji64 and RUNS/text-emoji64: a run with a checkpoint is loaded, one
without is trained first (with --set overrides applied to both configs; `--first-stage identity`
gives pixel-space models). Results: a Markdown table on stdout, a JSON file (default
RUNS/faithfulness.json: a list of results per task, one per --guidance) and sample grids next to it.

A run trained on some classes only (`--set "data.classes=[food & drink, animals & nature]"`) is
measured on those classes: its gallery holds their images only, and chance is 5 / that size.

The full run (after `ldmkit train-autoencoder configs/autoencoder/kl-f4c4-emoji64.yaml`):
    python experiments/faithfulness.py --first-stage runs/kl-f4c4-emoji64
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _runs import (  # experiments/_runs.py
    add_run_arguments,
    batches,
    command_line,
    run_config,
    spread,
    trained,
)

from ldmkit.data.images import make_grid
from ldmkit.data.openmoji import CLASS_NAMES, OpenMojiDataset
from ldmkit.device import pick_device
from ldmkit.evaluation import build_feature_network, image_features

CONFIGS = {"class": "configs/ldm/class-emoji64.yaml", "text": "configs/ldm/text-emoji64.yaml"}
TOP_K = 5
# EffNet inputs are 224 px: on CPU, batches of 64 spent twice as long in the kernel (fresh pages for the
# large activations) as in the network; batches of 8 halved the wall time.
FEATURE_BATCH = 8
CEILING_PER_CLASS = 40  # training images per class encoded and decoded to score a model that copies them


class Data:
    """OpenMoji at one resolution (only `classes` if given): images (N, 3, R, R), labels (N,), captions and
    EffNet features (N, 1280)."""

    def __init__(self, resolution: int, split: str, network, device, classes: tuple[str, ...] = ()):
        dataset = OpenMojiDataset(resolution, split, classes=classes)
        self.images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        self.labels = torch.tensor([r.label for r in dataset.records])
        self.captions = [r.caption for r in dataset.records]
        self.features = image_features(self.images, network, FEATURE_BATCH, device).features


def fit_probe(features: torch.Tensor, labels: torch.Tensor, weight_decay: float = 1e-3, iterations: int = 300):
    """Class-balanced multinomial logistic regression (L-BFGS from zero weights: deterministic) on
    standardised features; returns features (N, D) -> predicted labels (N,)."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = (features - mean) / std  # (N, D)
    counts = torch.bincount(labels, minlength=len(CLASS_NAMES)).float()
    weight = counts.sum() / (len(counts) * counts.clamp_min(1))  # each class counts as much as any other
    probe = torch.nn.Linear(x.shape[1], len(counts))
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), labels, weight=weight) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda f: probe((f - mean) / std).argmax(1).detach()


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean over classes of each class's accuracy: what the samples' accuracy measures, as they hold
    `--per-class` samples of every class."""
    return sum(float((predicted[labels == c] == c).float().mean()) for c in labels.unique().tolist()) / len(
        labels.unique())


@torch.no_grad()
def rebuilt(pipe, images: torch.Tensor, batch: int) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] encoded and decoded by the model's first stage."""
    return torch.cat([pipe.decode(pipe.encode(images[s].to(pipe.device))).cpu().float().clamp(-1, 1)
                      for s in batches(len(images), batch)])


@torch.no_grad()
def generate(pipe, conditions: list, args, guidance: float) -> torch.Tensor:
    """(n, 3, H, W) samples in [-1, 1], sample i drawn from seed i with conditions[i] (a class or a caption)."""
    from ldmkit.pipeline import conditions as user_conditions

    cfg = pipe.config.conditioning

    def cond(s: slice):
        return user_conditions.tensors(cfg, user_conditions.items(cfg, list(conditions[s]), s.stop - s.start))

    return torch.cat([pipe.decode(pipe.latents(list(range(s.start, s.stop)), cond(s), args.steps,
                                               args.sampler, guidance=guidance)).cpu().float().clamp(-1, 1)
                      for s in batches(len(conditions), args.batch)])


@functools.cache
def class_probe(pipe, train: Data, val: Data, network, batch: int) -> tuple:
    """(the probe: features -> labels, what it scores on real and reconstructed images), once per model
    and data, whatever the number of --guidance values."""
    classify = fit_probe(train.features, train.labels)
    val_predicted = classify(val.features)
    # the ceiling of samples: validation images through the model's own first stage, encoded and decoded;
    # and what copying the training set would score: up to CEILING_PER_CLASS training images of each class
    copied = torch.cat([torch.nonzero(train.labels == c).flatten()[:CEILING_PER_CLASS] for c in train.labels.unique()])
    rebuilt_val = classify(image_features(rebuilt(pipe, val.images, batch), network, FEATURE_BATCH,
                                          pipe.device).features)
    rebuilt_train = classify(image_features(rebuilt(pipe, train.images[copied], batch), network, FEATURE_BATCH,
                                            pipe.device).features)
    majority = int(torch.bincount(train.labels).argmax())
    return classify, {
        "probe_train_accuracy": float((classify(train.features) == train.labels).float().mean()),
        "probe_val_accuracy": float((val_predicted == val.labels).float().mean()),
        "probe_val_balanced_accuracy": balanced_accuracy(val_predicted, val.labels),
        "probe_val_reconstructed_balanced_accuracy": balanced_accuracy(rebuilt_val, val.labels),
        "probe_train_reconstructed_balanced_accuracy": balanced_accuracy(rebuilt_train, train.labels[copied]),
        "val_majority_rate": float((val.labels == majority).float().mean()),
        "val_images": len(val.labels), "train_images": len(train.labels),
    }


def evaluate_class(pipe, train: Data, val: Data, network, args, guidance: float) -> tuple[dict, torch.Tensor]:
    classify, probe = class_probe(pipe, train, val, network, args.batch)
    wanted = torch.arange(len(CLASS_NAMES)).repeat_interleave(args.per_class)  # (n,) class-major
    samples = generate(pipe, wanted.tolist(), args, guidance)
    predicted = classify(image_features(samples, network, FEATURE_BATCH, pipe.device).features)
    per_class = [float((predicted[wanted == c] == c).float().mean()) for c in range(len(CLASS_NAMES))]
    results = {
        "samples": len(wanted), "guidance": guidance,
        "sample_accuracy": float((predicted == wanted).float().mean()),
        "sample_chance": 1 / len(CLASS_NAMES),
        "sample_accuracy_per_class": dict(zip(CLASS_NAMES, per_class)),
        **probe,
    }
    grid = samples.unflatten(0, (len(CLASS_NAMES), args.per_class))[:, :8].flatten(0, 1)  # a row per class
    return results, grid


def evaluate_text(pipe, train: Data, val: Data, network, args, guidance: float) -> tuple[dict, torch.Tensor]:
    train_rows, val_rows = spread(args.prompts, len(train.captions)), spread(args.prompts, len(val.captions))
    # the gallery: every training image, then the validation images of the validation prompts
    gallery = F.normalize(torch.cat([train.features, val.features[val_rows]]), dim=1)  # (G, 1280)
    prompts = {"train": ([train.captions[i] for i in train_rows], torch.tensor(train_rows)),
               "val": ([val.captions[i] for i in val_rows], len(train.captions) + torch.arange(len(val_rows)))}

    def entry(row: int) -> tuple[torch.Tensor, str]:
        """The image and caption of a gallery row."""
        if row < len(train.captions):
            return train.images[row], train.captions[row]
        row = val_rows[row - len(train.captions)]
        return val.images[row], val.captions[row]

    results, grids = {"gallery": gallery.shape[0], "chance_top5": TOP_K / gallery.shape[0],
                      "guidance": guidance}, []
    for split in args.prompt_splits:
        captions, own = prompts[split]  # own[i]: gallery row of the emoji named by captions[i]
        samples = generate(pipe, captions, args, guidance)
        feats = F.normalize(image_features(samples, network, FEATURE_BATCH, pipe.device).features, dim=1)
        nearest = (feats @ gallery.T).topk(TOP_K, dim=1).indices  # (n, 5) gallery rows, nearest first
        other = own.roll(-1)  # the control: the emoji of the next prompt
        results[split] = {
            "prompts": len(captions),
            "top1": float((nearest[:, 0] == own).float().mean()),
            "top5": float((nearest == own[:, None]).any(1).float().mean()),
            "top5_other_prompt": float((nearest == other[:, None]).any(1).float().mean()),
            "examples": [{"prompt": c, "nearest": [entry(int(j))[1] for j in row]}
                         for c, row in list(zip(captions, nearest))[:5]],
        }
        reference = torch.stack([entry(int(j))[0] for j in own[:8]])  # (8, 3, H, W)
        grids.append(torch.stack([samples[:8], reference], dim=1).flatten(0, 1))  # sample, its emoji, ...
    return results, torch.cat(grids)


def table(report: dict) -> str:
    rows = ["| task | measure | value | chance |", "|---|---|---|---|"]
    for c in report.get("class", [])[:1]:
        rows += [f"| class | linear probe on real validation images (its own accuracy) | "
                 f"{c['probe_val_accuracy']:.3f} | {c['val_majority_rate']:.3f} (majority class) |",
                 f"| class | the same, weighting every class equally (as the samples are) | "
                 f"{c['probe_val_balanced_accuracy']:.3f} | 0.100 |",
                 f"| class | the same on the validation images encoded and decoded by the first stage (the ceiling "
                 f"of samples) | {c['probe_val_reconstructed_balanced_accuracy']:.3f} | 0.100 |",
                 f"| class | the same on up to {CEILING_PER_CLASS} training images per class, encoded and decoded (a "
                 f"model that copies its training set) | {c['probe_train_reconstructed_balanced_accuracy']:.3f} | "
                 "0.100 |"]
    for c in report.get("class", []):
        rows += [f"| class | probe accuracy on {c['samples']} samples, guidance {c['guidance']:g} | "
                 f"{c['sample_accuracy']:.3f} | {c['sample_chance']:.3f} (1/10 = majority rate of the samples) |"]
    for t in report.get("text", []):
        for split in ("train", "val"):
            if split in t:
                r = t[split]
                rows += [f"| text | top-5 retrieval of the prompt's emoji, {r['prompts']} {split} prompts, "
                         f"guidance {t['guidance']:g} | {r['top5']:.3f} | {t['chance_top5']:.4f} (5 / {t['gallery']}"
                         f" images); another prompt's emoji: {r['top5_other_prompt']:.3f} |"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(p)
    p.add_argument("--tasks", nargs="+", default=["class", "text"], choices=["class", "text"])
    p.add_argument("--guidance", type=float, nargs="+", default=[3.0],
                   help="classifier-free guidance scale; several values are each measured on the same seeds")
    p.add_argument("--per-class", type=int, default=10, help="class-conditional samples per class")
    p.add_argument("--prompts", type=int, default=100, help="text prompts per split (evenly spread captions)")
    p.add_argument("--prompt-splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--out", help="JSON file (default RUNS/faithfulness.json); grids are written next to it")
    args = p.parse_args(argv)
    out = Path(args.out or Path(args.runs) / "faithfulness.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": command_line(argv), "first_stage": args.first_stage, "sampler": args.sampler,
              "steps": args.steps,
              "features": "EfficientNet-Lite0 pooled (1280-d), ImageNet weights"}
    device = pick_device(args.device)
    network, data = build_feature_network("effnet").to(device), {}
    for task in args.tasks:
        pipe = trained(CONFIGS[task], args)
        # the model's own resolution and classes (data.classes): samples and real images alike
        resolution, classes = key = pipe.config.image_size, run_config(CONFIGS[task], args).data.classes
        if key not in data:
            data[key] = [Data(resolution, split, network, device, classes) for split in ("train", "val")]
        evaluate = evaluate_class if task == "class" else evaluate_text
        report[task] = []
        for guidance in args.guidance:
            start = time.perf_counter()
            result, grid = evaluate(pipe, *data[key], network, args, guidance)
            result["classes"] = list(classes) or "all"
            result["eval_seconds"] = round(time.perf_counter() - start, 1)
            report[task].append(result)
            suffix = "" if len(args.guidance) == 1 else f"_g{guidance:g}"
            make_grid(grid, nrow=min(8, args.per_class) if task == "class" else 8).save(
                out.with_name(f"{out.stem}_{task}{suffix}.png"))
            print(json.dumps({task: result}, indent=1), flush=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
