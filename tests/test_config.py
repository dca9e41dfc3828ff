from dataclasses import dataclass, field
from typing import Literal

import pytest

from ldmkit.config import apply_overrides, dump_yaml, from_dict, load_config, to_dict
from ldmkit.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    ch: int = 64
    mult: tuple[int, ...] = (1, 2)
    kind: Literal["kl", "vq"] = "kl"
    weight: float = 1e-6
    path: str | None = None


@dataclass(frozen=True)
class Outer:
    model: Inner = field(default_factory=Inner)
    name: str = "run"
    flag: bool = False


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer(Inner(ch=32, mult=(1, 2, 4), kind="vq"), name="x", flag=True)
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(Outer, path) == cfg
    assert to_dict(cfg)["model"]["mult"] == [1, 2, 4]


def test_misspelled_key_names_the_full_key_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  chh: 32\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.chh' \(did you mean 'model\.ch'\?\)"):
        load_config(Outer, path)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'model\.ch' expects int, got str 'wide'"):
        from_dict(Outer, {"model": {"ch": "wide"}})
    with pytest.raises(ConfigError, match=r"'model\.kind' expects 'kl' \| 'vq'"):
        from_dict(Outer, {"model": {"kind": "ae"}})
    with pytest.raises(ConfigError, match=r"'flag' expects bool"):
        from_dict(Outer, {"flag": 1})


def test_overrides_are_parsed_as_yaml_and_validated():
    cfg = apply_overrides(Outer(), ["model.ch=128", "model.mult=[1,1,2]", "model.weight=1e-5", "model.path=null",
                                    "name=emoji"])
    assert cfg.model == Inner(ch=128, mult=(1, 1, 2), weight=1e-5)
    assert cfg.name == "emoji"
    assert isinstance(apply_overrides(Outer(), ["model.weight=1"]).model.weight, float)
    with pytest.raises(ConfigError, match=r"'model\.chanels'"):
        apply_overrides(Outer(), ["model.chanels=3"])
    with pytest.raises(ConfigError, match=r"unknown config section 'modle'"):
        apply_overrides(Outer(), ["modle.ch=3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides(Outer(), ["model.ch"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
