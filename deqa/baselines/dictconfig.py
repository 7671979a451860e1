"""One rule for the baselines' JSON-backed dataclass configs: unknown keys are an error.

A typo in ``--config '{"lr": ...}'`` or in a saved ``deqa_baseline.json`` must fail naming the key
and the valid ones, never be dropped silently.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def from_dict_strict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """``cls(**d)`` after checking every key is a field of the dataclass ``cls``; ``what`` names it in the error."""
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**d)
