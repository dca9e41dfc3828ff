from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from ldmkit.config import apply_overrides, dump_yaml, from_dict, load_config, read_yaml, to_dict
from ldmkit.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    ch: int = 64
    mult: tuple[int, ...] = (1, 2)
    kind: Literal["kl", "vq"] = "kl"
    weight: float = 1e-6
    path: str | None = None
    limit: float | None = None


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


def one_line_error(cls, path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cls, path, overrides)
    text = str(info.value)
    assert "\n" not in text, text
    return text


def test_a_yaml_syntax_error_is_one_line_with_the_file_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nmodel:\n\tch: 32\n")
    assert one_line_error(Outer, path) == (
        f"config file {path} is not valid YAML: line 3, column 1: found character '\\t' that cannot start any "
        "token; fix the file (YAML indents with spaces, not tabs)")
    path.write_text("model:\n  ch: [1, 2\n")
    assert "is not valid YAML: line 3, column 1: expected ',' or ']'" in one_line_error(Outer, path)


def test_an_override_that_is_not_yaml_is_one_line_naming_it():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Outer(), ["model.ch=[unclosed"])
    assert str(info.value) == (
        "override 'model.ch=[unclosed': the value is not valid YAML (column 10: expected ',' or ']', but got "
        "'<stream end>'); write a number, true/false, null, a list like [1, 2] or a string in quotes")


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("name: x\n".encode("utf-16"))  # starts with the bytes ff fe
    assert one_line_error(Outer, path) == (f"config file {path} is not UTF-8 text (byte 0xff at offset 0); save it "
                                           "as UTF-8, as the files under configs/ are")
    path.write_bytes("\ufeffname: bom\n".encode())  # UTF-8 with a byte-order mark is UTF-8
    assert load_config(Outer, path).name == "bom"


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nmodel:\n  ch: 32\n  mult: [1]\n  ch: 64\n")
    assert one_line_error(Outer, path) == (f"config file {path} is not valid YAML: line 5, column 3: duplicate key "
                                           "'ch' (first given on line 3); fix the file (give each key once)")
    path.write_text("name: a\nflag: true\nname: b\n")
    assert "line 3, column 1: duplicate key 'name' (first given on line 1)" in one_line_error(Outer, path)
    with pytest.raises(ConfigError, match=r"override 'model=\{ch: 1, ch: 2\}': .*duplicate key 'ch'"):
        apply_overrides(Outer(), ["model={ch: 1, ch: 2}"])
    # a merge key may override what it merges
    assert read_yaml("a: &a {ch: 8, kind: vq}\nb: {<<: *a, ch: 16}\n")["b"] == {"ch": 16, "kind": "vq"}


@pytest.mark.parametrize("text, got", [("[]\n", "list []"), ("- name: x\n", "list [{'name': 'x'}]"),
                                       ("just words\n", "str 'just words'")])
def test_the_top_level_must_be_a_mapping(tmp_path, text, got):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert one_line_error(Outer, path) == (f"the top level of {path} must be a mapping of config keys, got a {got}; "
                                           "write `key: value` lines, as the files under configs/ do")
    path.write_text("# only a comment\n")  # an empty file: every default
    assert load_config(Outer, path) == Outer()


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "1e999"])
@pytest.mark.parametrize("key", ["model.weight", "model.limit"])  # float, and float | None
def test_non_finite_floats_are_refused_naming_the_key(tmp_path, key, value):
    got = "nan" if "nan" in value.lower() else ("-inf" if value.startswith("-") else "inf")
    message = (f"config key '{key}' must be a finite number, got {got}; give a number, or leave the key out for its "
               "default")
    with pytest.raises(ConfigError) as info:
        apply_overrides(Outer(), [f"{key}={value}"])
    assert str(info.value) == message
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  {key.split('.')[1]}: {value}\n")
    assert one_line_error(Outer, path) == f"{path}: {message}"
    assert getattr(apply_overrides(Outer(), [f"{key}=1e300"]).model, key.split(".")[1]) == 1e300  # finite: fine


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.stem}" for p in SHIPPED])
def test_every_shipped_config_loads(path):
    from ldmkit.training.autoencoder import AutoencoderRunConfig
    from ldmkit.training.ldm import LDMRunConfig

    cls = AutoencoderRunConfig if path.parent.name == "autoencoder" else LDMRunConfig
    cfg = load_config(cls, path)
    assert from_dict(cls, read_yaml(dump_yaml(cfg))) == cfg  # as a run folder's config.yaml
