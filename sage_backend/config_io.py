"""One reader and writer for nested frozen dataclass configs (the model's and the training recipe's).

`config_to_dict` gives plain JSON-able dicts; `config_from_dict` rebuilds the dataclass from one, following
the field types: nested dataclasses, tuples (of dataclasses, or of numbers: JSON turns tuples into lists),
classes with their own `from_json`/`to_json` (e.g. cameras.PoseDistribution), bools, strings and numbers,
each checked for its type and, where `ValueLimits` names the key, its range. Unknown keys are refused
with their path (`unknown config keys ['losses.r1_gama']`), so a typo or a foreign file never passes.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ValueLimits:
    """Ranges by key path: a number's bounds (a tuple's bound applies to each entry), a tuple's length,
    and the longest string (None: any)."""

    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    lengths: dict[str, tuple[int, int]] = field(default_factory=dict)
    max_text: int | None = None


NO_LIMITS = ValueLimits()


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A frozen dataclass config -> nested dicts and lists of JSON values."""
    return {f.name: _value_to_json(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def config_from_dict(cls: type[T], data: Any, limits: ValueLimits = NO_LIMITS, path: str = "") -> T:
    """Rebuild `cls` from `config_to_dict`'s output (or JSON of it); fields left out keep their defaults.
    Raises ValueError naming the key's path for unknown keys, sections that are not objects, values of the
    wrong type or out of `limits`, and what the dataclass's own checks refuse."""
    if not isinstance(data, dict):
        raise ValueError(f"config key {path or 'config'} must be an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown config keys {sorted(_join(path, k) for k in unknown)}")
    kwargs = {name: _read(hints[name], value, _join(path, name), limits) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ValueError(f"config {path or cls.__name__}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"config {path or 'model'}: {exc}") from None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _value_to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_value_to_json(v) for v in value]
    return value


def _read(kind: Any, value: Any, key: str, limits: ValueLimits) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # X | None: None, or read as X
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and hasattr(kind, "from_json"):
        return kind.from_json(value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return config_from_dict(kind, value, limits, key)
    if origin is tuple:
        return _read_tuple(args, value, key, limits)
    return _scalar(kind, value, key, limits)


def _read_tuple(args: tuple, value: Any, key: str, limits: ValueLimits) -> tuple:
    variable = len(args) == 2 and args[1] is Ellipsis
    lo, hi = limits.lengths.get(key, (0, 1 << 30)) if variable else (len(args), len(args))
    if not isinstance(value, (list, tuple)) or not lo <= len(value) <= hi:
        what = "integers" if args[0] is int else "numbers" if args[0] is float else "entries"
        raise ValueError(f"config key {key} must be a list of {lo}..{hi} {what}" if variable else f"config key {key} must be a list of {hi} {what}")
    kinds = args[:1] * len(value) if variable else args
    if dataclasses.is_dataclass(kinds[0]) if kinds else False:
        return tuple(_read(k, v, _join(key, i), limits) for i, (k, v) in enumerate(zip(kinds, value)))
    return tuple(_read(k, v, key, limits) for k, v in zip(kinds, value))  # numbers share the tuple's bounds


def _scalar(kind: Any, value: Any, key: str, limits: ValueLimits) -> Any:
    """`value` if it has the type `kind` (an int may stand for a float) and lies in the key's bounds."""
    if kind is bool:
        if type(value) is not bool:
            raise ValueError(f"config key {key} must be true or false")
        return value
    if kind is str:
        if not isinstance(value, str) or (limits.max_text is not None and not (len(value) <= limits.max_text and value.isprintable())):
            raise ValueError(f"config key {key} must be a string" + (f" of at most {limits.max_text} characters" if limits.max_text else ""))
        return value
    if kind not in (int, float):
        return value
    integer = kind is int
    lo, hi = limits.bounds.get(key, (-float("inf"), float("inf")))
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi  # False for NaN
    if not ok or (integer and not isinstance(value, int)):
        bound = f" in {lo}..{hi}" if key in limits.bounds else ""
        raise ValueError(f"config key {key} = {str(value)[:40]} must be {'an integer' if integer else 'a number'}{bound}")
    return value if integer else float(value)  # JSON writes 0.0 as 0; torch's optimisers refuse int betas
