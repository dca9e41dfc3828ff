"""Typed configs: frozen dataclasses <-> plain dicts <-> YAML, strictly validated.

Every config in ldmkit is a dataclass that lives next to the code it configures. This module
is the one place that turns YAML files and `--set key=value` overrides into those dataclasses:
an unknown key or a value of the wrong type is a `ConfigError` that names the full key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ldmkit.errors import ConfigError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-6` as a float, as YAML 1.2 does (PyYAML's 1.1 rules need `1.0e-6`), and
    refuses a key given twice in one mapping (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict = {}  # key -> the node that gave it first
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override what it merges
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:  # an unhashable key: PyYAML's own error names it
                continue
            if earlier is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {earlier.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def yaml_problem(err: yaml.YAMLError, lines: bool = True) -> str:
    """PyYAML's several-line report in one line: where (`line 3, column 1`; the column alone with
    lines=False) and what (`found character '\\t' that cannot start any token`)."""
    if isinstance(err, yaml.reader.ReaderError):
        return f"character {err.position + 1}: {err.reason} (#x{err.character:04x})"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    if problem is None:
        problem = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if mark is None:
        return problem
    return f"{f'line {mark.line + 1}, ' if lines else ''}column {mark.column + 1}: {problem}"


def unreadable_yaml(err: Exception) -> str:
    """Why a YAML file could not be read, in one line: PyYAML's problem and where, or the text's encoding."""
    if isinstance(err, yaml.YAMLError):
        return yaml_problem(err)
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
    return str(err)


def _yaml_fix(err: yaml.YAMLError) -> str:
    problem = str(getattr(err, "problem", "") or "")
    if "'\\t'" in problem:
        return "YAML indents with spaces, not tabs"
    if problem.startswith("duplicate key"):
        return "give each key once"
    return "see the files under configs/ for the layout"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"config {'key ' + repr(where) if where else 'file'} must be a mapping of keys for "
            f"{cls.__name__}, got {type(data).__name__} {data!r}"
        )
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{_join(where, close[0])}'?)" if close else ""
            raise ConfigError(
                f"unknown config key '{_join(where, str(key))}'{hint}; "
                f"{cls.__name__} accepts: {', '.join(fields)}"
            )
    kwargs = {key: _coerce(hints[key], value, _join(where, key)) for key, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing config key '{_join(where, missing[0])}' for {cls.__name__}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"config {'section ' + repr(where) if where else ''}: {err}") from err


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except _NotFinite:
                raise
            except ConfigError:
                continue
        raise _type_error(tp, value, where)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise _type_error(tp, value, where)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _type_error(tp, value, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"config key '{where}' expects {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(tp, value, where)
        (arg,) = get_args(tp)
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(tp, value, where)
        key_tp, val_tp = get_args(tp)
        return {_coerce(key_tp, k, where): _coerce(val_tp, v, _join(where, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(tp, value, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(tp, value, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # (YAML's .nan, .inf, or a float past 1.8e308)
                raise _NotFinite(f"config key '{where}' must be a finite number, got {value}; give a number, or "
                                 "leave the key out for its default")
            return float(value)
        raise _type_error(tp, value, where)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(tp, value, where)
    raise ConfigError(f"config key '{where}' has a type ldmkit cannot read from YAML: {tp!r}")


class _NotFinite(ConfigError):
    """A NaN or infinite float for a float key: said as such, not as a type mismatch of each Union member."""


def _type_error(tp: Any, value: Any, where: str) -> ConfigError:
    return ConfigError(
        f"config key '{where}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )


def to_dict(cfg: Any) -> dict:
    """A dataclass as plain YAML-safe data (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'model.ch=64' -> (['model', 'ch'], 64); the value is read as YAML ('[1,2]', 'true', 'null')."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub=value, e.g. model.ch=64")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        where = yaml_problem(err, lines="\n" in raw.strip())
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({where}); "
                          "write a number, true/false, null, a list like [1, 2] or a string in quotes") from err
    return key.strip().split("."), value


def apply_overrides(cfg: T, overrides: typing.Iterable[str]) -> T:
    """Return a new config with `key.sub=value` overrides applied and re-validated."""
    data = to_dict(cfg)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for depth, key in enumerate(path[:-1]):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"unknown config section '{where}' in override {text!r}")
            node = node[key]
        node[path[-1]] = value  # an unknown leaf is reported by from_dict with its full key
    return from_dict(type(cfg), data)


def load_config(cls: type[T], path: str | Path, overrides: typing.Iterable[str] = ()) -> T:
    """Read a YAML config file into `cls`, then apply overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; the shipped ones are under configs/")
    try:
        data = read_yaml(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                          f"{err.start}); save it as UTF-8, as the files under configs/ are") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(err)}; fix the file "
                          f"({_yaml_fix(err)})") from err
    if data is None:  # an empty file (or only comments): every default
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level of {path} must be a mapping of config keys, got a "
                          f"{type(data).__name__} {data!r:.40}; write `key: value` lines, as the files under "
                          "configs/ do")
    try:
        cfg = from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return apply_overrides(cfg, overrides)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
