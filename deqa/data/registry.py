"""The data set registry: label file, columns and score scale of each supported IQA data set.

Entries live in deqa/data/datasets.yaml (package data) with the label CSVs in
deqa/data/labels/<name>/labels.csv. ``get_dataset("koniq")`` resolves names and aliases
case-insensitively (ignoring '-' and '_').
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from .formats import LabelTable, read_labels

__all__ = [
    "DatasetSpec",
    "UnknownDatasetError",
    "get_dataset",
    "list_datasets",
    "load_registry",
    "REGISTRY_PATH",
]

REGISTRY_PATH = Path(__file__).with_name("datasets.yaml")


class UnknownDatasetError(ValueError):
    """A data set name that is neither a registered name nor an alias."""


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set. Scores are rescaled from ``mos_range`` to the level scale.

    ``std_range``: the scale the std is expressed on when it differs from ``mos_range`` (KonIQ:
    0-100 MOS, std of the 1-5 ratings). ``std_column`` None: the data set publishes no std.
    ``default_std``: deqa-labels' --default-std for this data set (1-5 scale: the std at mid-scale for
    the ``sos`` no-std policy, every row's std for ``dataset_mean_std``; None: deqa's default).
    """

    name: str
    title: str
    labels: str
    image_column: str
    score_column: str
    mos_range: tuple[float, float]
    lower_better: bool = False
    std_column: str | None = None
    std_range: tuple[float, float] | None = None
    split_column: str | None = "split"
    histogram_columns: tuple[str, ...] | None = None
    num_rows: int | None = None
    default_std: float | None = None
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        where = f"data set {self.name!r}"
        for key in ("mos_range", "std_range"):
            rng = getattr(self, key)
            if rng is None:
                continue
            try:
                lo, hi = (float(v) for v in rng)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: {key} must be [lo, hi], got {rng!r}") from None
            if not lo < hi:
                raise ValueError(f"{where}: {key} must have lo < hi, got [{lo}, {hi}]")
            object.__setattr__(self, key, (lo, hi))
        if self.std_range is not None and self.std_column is None:
            raise ValueError(f"{where}: std_range given but std_column is null")
        if self.histogram_columns is not None:
            object.__setattr__(self, "histogram_columns", tuple(self.histogram_columns))
        object.__setattr__(self, "aliases", tuple(self.aliases or ()))
        if self.default_std is not None and not float(self.default_std) >= 0:
            raise ValueError(f"{where}: default_std must be >= 0, got {self.default_std!r}")

    @property
    def label_path(self) -> Path:
        """Absolute path of the label file (``~`` expanded; relative paths are inside deqa/data/)."""
        path = Path(self.labels).expanduser()
        return path if path.is_absolute() else REGISTRY_PATH.parent / path

    @property
    def has_std(self) -> bool:
        return self.std_column is not None

    def read_labels(self) -> LabelTable:
        """The registry's own label file, read with this spec's columns."""
        table = read_labels(
            self.label_path,
            "iqa-csv",
            image_column=self.image_column,
            score_column=self.score_column,
            std_column=self.std_column,
            split_column=self.split_column,
            histogram_columns=self.histogram_columns,
        )
        if self.std_column is None:
            table.std = None  # a blank std column (SPAQ, AGIQA-3K) is not a std
        return table


_FIELDS = {f.name for f in dataclasses.fields(DatasetSpec)} - {"name"}
_REQUIRED = {
    f.name for f in dataclasses.fields(DatasetSpec) if f.default is dataclasses.MISSING
} - {"name"}


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "").strip()


def load_registry(path: str | Path | None = None) -> dict[str, DatasetSpec]:
    """Parse a registry YAML (default: the packaged one). Unknown or missing keys raise."""
    path = Path(path) if path is not None else REGISTRY_PATH
    if path == REGISTRY_PATH:
        return dict(_packaged_registry())
    return _parse_registry(path)


@functools.lru_cache(maxsize=1)
def _packaged_registry() -> dict[str, DatasetSpec]:
    return _parse_registry(REGISTRY_PATH)


def _parse_registry(path: Path) -> dict[str, DatasetSpec]:
    with path.open(encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of data set name -> settings")
    specs: dict[str, DatasetSpec] = {}
    seen: dict[str, str] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {name!r} must be a mapping")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise ValueError(
                f"{path}: data set {name!r} has unknown key(s) {unknown}; known keys: {sorted(_FIELDS)}"
            )
        missing = sorted(_REQUIRED - set(entry))
        if missing:
            raise ValueError(f"{path}: data set {name!r} is missing key(s) {missing}")
        spec = DatasetSpec(name=str(name), **entry)
        for alias in (spec.name, *spec.aliases):
            k = _key(alias)
            if k in seen and seen[k] != spec.name:
                raise ValueError(
                    f"{path}: name/alias {alias!r} of {spec.name!r} already used by {seen[k]!r}"
                )
            seen[k] = spec.name
        specs[spec.name] = spec
    return specs


def list_datasets() -> list[str]:
    """Registered data set names (without aliases), in registry order."""
    return list(_packaged_registry())


def get_dataset(name: str) -> DatasetSpec:
    """Look up a data set by name or alias (case-insensitive; '-' and '_' ignored)."""
    specs = _packaged_registry()
    k = _key(name)
    for spec in specs.values():
        if k in {_key(a) for a in (spec.name, *spec.aliases)}:
            return spec
    known = ", ".join(
        f"{s.name} ({', '.join(s.aliases)})" if s.aliases else s.name for s in specs.values()
    )
    raise UnknownDatasetError(f"unknown data set {name!r}; known data sets (aliases): {known}")
