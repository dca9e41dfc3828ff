"""The served models: loaded once, named, and described for clients; requests name them, never a path.

`ldmkit serve runs/text-emoji64 sr=runs/sr-emoji64` serves "text-emoji64" and "sr": a model is
named NAME=PATH, or by its file or folder name (made unique with -2, -3, ...). A model's task
follows its conditioning: super-resolution models upscale, inpainting models inpaint, every other
kind generates (unconditional, class, text, layout, semantic, and hybrids of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ldmkit.errors import ConfigError
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.metadata import file_sha256
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS, sampler_options
from ldmkit.serve.errors import ApiError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TASKS = {"low_res": "upscale", "inpaint": "inpaint"}  # conditioning kind -> task; the rest generate
NEGATIVE = {"text": "prompt", "class": "class"}  # what a negative condition is, per kind
GUIDE_DEFAULT = 2.0  # autoguidance's best strength on the main job's model (docs/results/RECIPE.md)
GUIDED = {"class", "text", "layout"}  # context conditions: classifier-free guidance by default on the page


@dataclass
class ServedModel:
    name: str
    pipe: Pipeline

    def __post_init__(self):
        self.sha256 = file_sha256(self.pipe.source)

    @property
    def conditioning(self):
        return self.pipe.config.conditioning

    @property
    def task(self) -> str:
        return TASKS.get(self.conditioning.kind, "generate")

    @property
    def short_hash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def adapters(self) -> list[dict]:
        """The LoRA adapters merged into it at load ({"file", "sha256", "weight"} each)."""
        return self.pipe.load_options.get("lora", [])

    @property
    def guided(self) -> bool:
        """Whether it has a guide model (autoguidance): then guidance works without a condition too."""
        return self.pipe.guide is not None

    @property
    def title(self) -> str:
        """A1111's checkpoint title: "name [hash]"."""
        return f"{self.name} [{self.short_hash}]" if self.short_hash else self.name

    def describe(self) -> dict:
        """What the model takes, for clients and the page's form."""
        cfg, model = self.conditioning, self.pipe.model
        info = {"name": self.name, "title": self.title, "task": self.task, "kind": cfg.kind,
                "conditions": list(cfg.kinds), "image_size": self.pipe.config.image_size,
                "size_multiple": model.factor * self.pipe.config.unet.size_multiple, "device": str(self.pipe.device),
                "guidance": bool(cfg.kinds) or self.guided,
                "guidance_default": GUIDE_DEFAULT if self.guided else 3.0 if set(cfg.kinds) & GUIDED else 1.0,
                "negative": NEGATIVE.get(cfg.kind) if cfg.hybrid == "none" else None,
                "samplers": list(SAMPLERS), "sampler_default": DEFAULT_SAMPLER, "steps_default": DEFAULT_STEPS,
                "sha256": self.sha256, "lora": [{"name": Path(item["file"]).name, "sha256": item["sha256"],
                                                 "weight": item["weight"]} for item in self.adapters],
                "guide": self.pipe.guide_record(), "tiny_decoder": self.pipe.tiny_decoder,
                "eta_samplers": [s for s in SAMPLERS if "eta" in sampler_options(s)],
                "karras_samplers": [s for s in SAMPLERS if "karras" in sampler_options(s)]}
        if "class" in cfg.kinds:
            names = cfg.class_label.names or tuple(str(i) for i in range(cfg.class_label.num_classes))
            info["classes"] = list(names)
        if "layout" in cfg.kinds:
            info["layout"] = {"num_classes": cfg.layout.num_classes, "max_boxes": cfg.layout.max_boxes}
        if "semantic" in cfg.kinds:
            info["semantic"] = {"num_classes": cfg.semantic.num_classes}
        if cfg.kind == "low_res":
            info["upscale"] = {"factor": cfg.low_res.factor}
        return info


class Registry:
    """The served models by name; `default` is the one A1111 requests without a checkpoint get."""

    def __init__(self, models: list[ServedModel]):
        if not models:
            raise ValueError("a server needs at least one model")
        self.models = {m.name: m for m in models}
        self.default = models[0].name

    def names(self) -> str:
        return ", ".join(self.models)

    def get(self, name: str | None, task: str | None = None) -> ServedModel:
        """The served model `name` (None: the first that does `task`), checked to do `task`; else a 422 naming
        the choices."""
        if name is None:
            name = next((m.name for m in self.models.values() if task in (None, m.task)), self.default)
        model = self.models.get(name)
        if model is None:
            raise ApiError(422, f"model {name!r} is not served here; choose one of: {self.names()}")
        if task is not None and model.task != task:
            fits = [m.name for m in self.models.values() if m.task == task] or ["none is served"]
            raise ApiError(422, f"model {model.name!r} is a '{model.conditioning.kind}' model, which does "
                                f"{model.task}, not {task}; models that {task} here: {', '.join(fits)}")
        return model

    def find(self, checkpoint: str) -> ServedModel:
        """A model by any of A1111's names for a checkpoint: name, title, short hash or sha256."""
        for model in self.models.values():
            if checkpoint in (model.name, model.title, model.short_hash, model.sha256):
                return model
        raise ApiError(422, f"checkpoint {checkpoint!r} is not served here; choose one of: {self.names()}")


def model_names(specs: list[str]) -> list[tuple[str, str]]:
    """[(name, path)] for the command line's MODEL arguments (NAME=PATH or PATH), names unique: a name given
    twice is an error; a model named after its file gets -2, -3, ... where that name is taken."""
    given: list[tuple[str | None, str]] = []  # (the NAME of NAME=PATH or None, path)
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or Path(spec).exists():
            given.append((None, spec))
            continue
        if not NAME.match(name):
            raise ConfigError(f"model name {name!r} (in {spec!r}): use up to 64 letters, digits, '.', '_' or '-'")
        twice = [p for n, p in given if n == name]
        if twice:
            raise ConfigError(f"the model name {name!r} is given twice ({name}={twice[0]} and {spec}); give each "
                              "served model its own NAME=")
        given.append((name, path))
    taken = {name for name, _ in given if name is not None}
    out: list[tuple[str, str]] = []
    for name, path in given:
        if name is None:
            base = name = _name_of(path)
            k = 2
            while name in taken:
                name, k = f"{base}-{k}", k + 1
            taken.add(name)
        out.append((name, path))
    return out


def lora_per_model(specs: list[str], names: list[str]) -> dict[str, list[tuple[str, float]]]:
    """The --lora options ([MODEL=]LORA[:WEIGHT]) as {served name: [(path, weight)]}, in order."""
    from ldmkit.lora import parse_spec

    return _per_model("--lora", "MODEL=LORA[:WEIGHT]", specs, names, parse_spec)


def guide_per_model(specs: list[str], names: list[str]) -> dict[str, str | None]:
    """The --guide options ([MODEL=]GUIDE) as {served name: guide path or None}, one guide per model at most."""
    return _one_per_model("--guide", "GUIDE", "guide", specs, names)


def tiny_decoder_per_model(specs: list[str], names: list[str]) -> dict[str, str | None]:
    """The --tiny-decoder options ([MODEL=]PATH) as {served name: path or None}, one per model at most."""
    return _one_per_model("--tiny-decoder", "PATH", "tiny decoder", specs, names)


def _one_per_model(flag: str, value: str, what: str, specs: list[str], names: list[str]) -> dict[str, str | None]:
    out = {}
    for name, paths in _per_model(flag, f"MODEL={value}", specs, names, str).items():
        if len(paths) > 1:
            raise ConfigError(f"{flag} is given {len(paths)} times for {name}; a model has one {what}")
        out[name] = paths[0] if paths else None
    return out


def _per_model(flag: str, form: str, specs: list[str], names: list[str], parse) -> dict[str, list]:
    """Options of the form [MODEL=]VALUE as {served name: [parse(VALUE)]}; MODEL may be left out with one model."""
    out: dict[str, list] = {name: [] for name in names}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name in out and not Path(spec).exists():
            out[name].append(parse(rest))
        elif len(names) == 1:
            out[names[0]].append(parse(spec))
        else:
            raise ConfigError(f"{flag} {spec!r}: {len(names)} models are served; say which one takes it as "
                              f"{form}, MODEL one of: {', '.join(names)}")
    return out


def _name_of(path: str) -> str:
    p = Path(path.rstrip("/"))
    stem = p.stem if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth") else p.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
    return name or "model"
