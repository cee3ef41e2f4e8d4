"""Dataclass configs: YAML load, dotted `key=value` overrides, validation.

Every part of the system describes its settings as a dataclass (kept beside the code it configures).
This module turns YAML files and command-line overrides into those dataclasses, checking every key and
type on the way, so a typo fails at start-up with a message that names the key instead of hours later.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from videopoet.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or override that does not fit its dataclass."""


def _describe(tp: Any) -> str:
    """A short human name for a type annotation, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple, dict):
        args = ", ".join(_describe(a) if a is not Ellipsis else "..." for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _closest(name: str, valid: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.0)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp` and return it in that type; raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def wrong() -> ConfigError:
        return ConfigError(f"config key '{key}': expected {_describe(tp)}, got {value!r} ({type(value).__name__})")

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise wrong()
        return _build(tp, value, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise wrong()
    if origin is typing.Literal:
        if value in args:
            return value
        raise wrong()
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        return [_convert(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise wrong()
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise wrong() from None
        raise wrong()
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise wrong()
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise wrong()
    raise TypeError(f"config key '{key}': unsupported annotation {tp!r}")


def _with_preset(cls: type, data: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """`preset: NAME` in a section whose dataclass has presets (a `PRESETS` dict beside it, e.g. the LLM's
    sizes) stands for that preset's values; the section's other keys change them."""
    if "preset" not in data or any(f.name == "preset" for f in dataclasses.fields(cls)):
        return data
    presets = getattr(sys.modules.get(cls.__module__), "PRESETS", None)
    name = data["preset"]
    if not presets:
        raise ConfigError(f"'{prefix}preset': {cls.__name__} has no presets")
    if name not in presets:
        raise ConfigError(f"unknown preset '{prefix}preset: {name}'; presets are: {', '.join(presets)}")
    return {**to_dict(presets[name]), **{k: v for k, v in data.items() if k != "preset"}}


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    data = _with_preset(cls, data, prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(f"unknown config key '{prefix}{name}'{_closest(str(name), fields)}")
        kwargs[name] = _convert(value, hints[name], prefix + name)
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field without a value
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}': {e}") from None
    except ValueError as e:  # __post_init__ validation
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}': {e}") from None
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a plain mapping, checking every key and type; `prefix` names the
    section in error messages."""
    return _build(cls, data or {}, prefix=f"{prefix}." if prefix else "")


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML/JSON-able data (tuples become lists, paths strings)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted `key=value` overrides to nested config data, returning a new mapping."""
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(path[: i + 1])}' is not a section")
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with clear errors for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load `cls` from an optional YAML file, then apply `key=value` overrides, then validate."""
    data = read_yaml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, overrides))


def save_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (the file `load_config` reads back to an equal config)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


# The sections of a project config file (configs/*.yaml), each read into the dataclass that lives beside
# the code it configures. Named as strings and imported lazily, so this module stays free of heavy and
# circular imports; the media tokenizers' sections come from their registry (one entry per family).
_SECTIONS: dict[str, str] = {
    "clip": "videopoet.geometry:ClipConfig",
    "shapes": "videopoet.data.synthetic:ShapesConfig",
    "media_clips": "videopoet.data.media_clips:MediaClipsConfig",
    "text_tokenizer": "videopoet.tokenizers.text:TextTokenizerConfig",
    "ingest": "videopoet.data.ingest:IngestConfig",
    "tasks": "videopoet.data.tasks:TaskConfig",
    "llm": "videopoet.llm.model:LLMConfig",
    "llm_train": "videopoet.llm.train:LLMTrainConfig",
    "sampling": "videopoet.llm.sampling:SamplingSection",
    "demo": "videopoet.demo:DemoConfig",
}
_REGISTRY = "videopoet.tokenizers.registry"
# Sections that are absent unless a config has them: `clip` sets other sections' keys, so a default one
# would contradict a config that sets those keys itself (as configs without a clip section do).
OPTIONAL_SECTIONS = ("clip",)


def sections() -> dict[str, str]:
    """Every project config section: name -> `module:Class` of its dataclass."""
    families = importlib.import_module(_REGISTRY).config_sections()
    return {**_SECTIONS, **families}


def section_class(section: str) -> type:
    """The dataclass of a project config section, e.g. `text_tokenizer`."""
    known = sections()
    if section not in known:
        raise ConfigError(f"unknown config section '{section}'{_closest(section, known)}")
    module_name, class_name = known[section].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


_MISSING = object()


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def apply_clip(data: dict[str, Any]) -> dict[str, Any]:
    """Hand the `clip` section's values to the keys that depend on them (`geometry.CLIP_KEYS`); a key
    set to another value as well is an error naming both. A config without `clip` is returned as is."""
    from videopoet.geometry import ClipConfig

    if data.get("clip") is None:
        return data
    try:
        clip = from_dict(ClipConfig, data["clip"], prefix="clip")
        values = clip.section_values()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for dotted, value in values.items():
        current = _lookup(data, dotted)
        if current is _MISSING or current is None:
            data = apply_overrides(data, [f"{dotted}={json.dumps(value)}"])
        elif (list(current) if isinstance(current, (list, tuple)) else current) != value:
            raise ConfigError(f"{dotted} = {current} disagrees with the clip section ({value}); set it once, under clip")
    return data


def load_section(section: str, path: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """Load one section of a project config file; overrides are relative to the section
    (`vocab_size=2000`) or name it (`text_tokenizer.vocab_size=2000`)."""
    data = apply_clip(read_yaml(path) if path is not None else {})
    known = sections()
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}' in {path}{_closest(str(unknown[0]), known)}")
    body = data.get(section) or {}
    if not isinstance(body, dict):
        raise ConfigError(f"config section '{section}' in {path} must be a mapping")
    prefix = section + "."
    local = [o[len(prefix) :] if o.startswith(prefix) else o for o in overrides]
    return from_dict(section_class(section), apply_overrides(body, local), prefix=section)


def load_project_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Every section of a project config file (missing sections get their defaults, but for
    `OPTIONAL_SECTIONS`), validated."""
    data = apply_clip(apply_overrides(read_yaml(path) if path is not None else {}, overrides))
    result = {}
    for name, body in data.items():
        cls = section_class(name)
        if body is not None and not isinstance(body, dict):
            raise ConfigError(f"config section '{name}' must be a mapping")
        result[name] = from_dict(cls, body, prefix=name)
    for name in sections():
        if name not in OPTIONAL_SECTIONS:
            result.setdefault(name, section_class(name)())
    return result
