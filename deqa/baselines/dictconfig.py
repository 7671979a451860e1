"""One rule for the baselines' JSON-backed dataclass configs: unknown keys and values of the wrong
kind are errors.

A typo in ``--config '{"lr": ...}'`` or in a saved ``deqa_baseline.json`` must fail naming the key
and the valid ones, never be dropped silently; ``{"lr": "fast"}`` or ``{"epochs": "3"}`` must fail
naming the key and the type it takes, not as a TypeError from deep inside a check.
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

# The scalar types a JSON value is checked against (an int is a float too; a bool is neither).
_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _accepts(kind: Any, value: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``kind``; None when the annotation is not one checked here."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(k, value) for k in typing.get_args(kind)]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if kind is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(kind)
    if kind in _SCALARS:
        if isinstance(value, bool):
            return kind is bool
        if kind is float:
            return isinstance(value, (int, float))
        return isinstance(value, kind)
    return None


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if kind is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(kind))
    return _SCALARS.get(kind, getattr(kind, "__name__", str(kind)))


def from_dict_strict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """``cls(**d)`` after checking every key is a field of the dataclass ``cls`` and every scalar
    value has its field's type; ``what`` names the config in the error."""
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        if _accepts(hints.get(key), value) is False:
            raise ValueError(f"{what}: {key} must be {_describe(hints[key])}, got {value!r}")
    return cls(**d)
