"""What one evaluation runs on: the registered labels of a data set, its split, and its images.

The data set registry (:mod:`deqa.data.registry`) ships the label files and score scales; the
user supplies the images, one folder per data set (``--image-root koniq10k=/data/koniq/images``
or a YAML mapping names to folders). Image names in the label files are paths relative to that
folder (e.g. ``826373.jpg``, ``jp2k/img2.bmp``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "EvalSet",
    "load_eval_set",
    "load_image_roots",
    "load_extra_registry",
    "resolve_datasets",
    "parse_split",
    "ALL_SPLITS",
]

# --split value that keeps every row of the label file.
ALL_SPLITS = "all"


@dataclass
class EvalSet:
    """Labels of one data set (one split) joined with an image folder.

    mos [N]: scores on the data set's own scale; mos_norm [N]: mapped linearly onto the level
    scale [1, 5] with higher = better (DMOS flipped), which is the scale every metric and plot
    of the harness uses; std_norm [N] on the same scale (NaN = none published) or None.
    """

    name: str
    title: str
    split: str
    images: list[str]
    mos: np.ndarray
    mos_norm: np.ndarray
    std_norm: np.ndarray | None
    image_root: Path
    label_path: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        for key in ("mos", "mos_norm", "std_norm"):
            arr = getattr(self, key)
            if arr is not None and len(arr) != n:
                raise ValueError(f"{self.name}: {key} has {len(arr)} rows but there are {n} images")
        # One image, two rows: "a.jpg", "./a.jpg" and "sub/../a.jpg" are one file under any root.
        first: dict[str, int] = {}
        for i, img in enumerate(self.images):
            j = first.setdefault(os.path.normpath(img), i)
            if j != i:
                where = f"{self.label_path}: " if self.label_path is not None else ""
                raise ValueError(
                    f"{where}{self.name}: image {img!r} appears twice in the labels of split {self.split!r} "
                    f"(rows {j + 1} and {i + 1} of the split{'' if img == self.images[j] else f', as {self.images[j]!r}'})"
                )
        self.image_root = Path(self.image_root)

    def __len__(self) -> int:
        return len(self.images)

    def path(self, i: int) -> Path:
        return self.image_root / self.images[i]

    def head(self, n: int) -> EvalSet:
        """The first ``n`` rows (a quick look at a large split)."""
        return EvalSet(
            name=self.name,
            title=self.title,
            split=f"{self.split}[:{n}]" if n < len(self) else self.split,
            images=self.images[:n],
            mos=self.mos[:n],
            mos_norm=self.mos_norm[:n],
            std_norm=None if self.std_norm is None else self.std_norm[:n],
            image_root=self.image_root,
            label_path=self.label_path,
        )

    @property
    def has_std(self) -> bool:
        return self.std_norm is not None and bool(np.isfinite(self.std_norm).any())


def parse_split(split: str) -> tuple[str | None, str | None]:
    """``"test"`` -> (None, "test") (the registry's split column); ``"official_split=test"`` ->
    ("official_split", "test"); ``"all"`` -> (None, None)."""
    split = split.strip()
    if not split:
        raise ValueError("--split must not be empty; use 'all' for every row")
    if split == ALL_SPLITS:
        return None, None
    if "=" in split:
        column, value = (s.strip() for s in split.split("=", 1))
        if not column or not value:
            raise ValueError(f"--split {split!r}: expected COLUMN=VALUE, e.g. official_split=test")
        return column, value
    return None, split


def load_eval_set(spec, image_root: str | os.PathLike, split: str = "test") -> EvalSet:
    """The rows of ``split`` of a registered data set (a ``DatasetSpec``), with its images under
    ``image_root``. Scores are validated and mapped to [1, 5] by the registry's scale.

    ``split`` names a value of the registry's split column (``spec.split_column``; when null, a
    column named "split" if the file has one), ``COLUMN=VALUE`` or ``all``. Only a split that
    selects rows needs its column: ``all`` evaluates a label file that has none."""
    from ..data.labeling import MosScale, normalize_table

    column, value = parse_split(split)
    # Read the split column like any other column rather than through the reader's split_column,
    # which fails on a file without it: whether it is needed depends on --split (checked below).
    table = dataclasses.replace(spec, split_column=None).read_labels()
    if value is not None:
        columns = table.named_columns()
        others = f"; columns: {sorted(columns)}" if columns else ""
        if column is None:
            column = spec.split_column or table.columns.get("split") or None
            if column is None:
                raise ValueError(
                    f"{spec.label_path}: data set {spec.name!r} has no split column (its registry "
                    f"entry sets split_column: null and the file has no 'split' column), so --split "
                    f"{split} selects nothing; evaluate every row with --split all, or pick rows "
                    f"with --split COLUMN=VALUE{others}"
                )
            where = f"split column {column!r}"
            if column not in columns:
                raise ValueError(
                    f"{spec.label_path}: data set {spec.name!r} has no {where} (the registry's "
                    f"split_column, 'split' when the entry does not set it){others}; evaluate every "
                    f"row with --split all, pick rows with --split COLUMN=VALUE, or set split_column "
                    f"in the registry entry to the column that holds {value!r} (null when the file "
                    "has none)"
                )
        else:
            where = f"column {column!r}"
            if column not in columns:
                raise ValueError(
                    f"{spec.label_path}: data set {spec.name!r} has no {where}{others}; use "
                    "--split all for every row, or COLUMN=VALUE with one of those columns"
                )
        labels = columns[column]
        mask = np.array([str(s).strip() == value for s in labels])
        if not mask.any():
            found = sorted({str(s).strip() for s in labels})
            raise ValueError(
                f"{spec.label_path}: no row of {spec.name!r} has {where} = {value!r}; values present: {found}"
            )
        table = table.select(mask)
    mos_norm, std_norm = normalize_table(table, MosScale.from_dataset(spec))
    return EvalSet(
        name=spec.name,
        title=spec.title,
        split=split,
        images=list(table.images),
        mos=np.asarray(table.mos, dtype=np.float64),
        mos_norm=np.asarray(mos_norm, dtype=np.float64),
        std_norm=None
        if std_norm is None or not np.isfinite(std_norm).any()
        else np.asarray(std_norm, dtype=np.float64),
        image_root=Path(image_root),
        label_path=spec.label_path,
    )


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "").strip()


def load_extra_registry(path: str | Path) -> dict[str, Any]:
    """Data sets of a user registry YAML (the packaged registry's schema). Relative ``labels``
    paths are taken relative to that YAML file (the packaged ones are relative to deqa/data/);
    ``~`` is expanded first, so ``labels: ~/x.csv`` is in the home folder."""
    from ..data.registry import load_registry

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--registry file {path} does not exist")
    specs = load_registry(path)
    for name, spec in specs.items():
        labels = Path(spec.labels).expanduser()
        if not labels.is_absolute():
            labels = (path.parent / labels).resolve()
        specs[name] = dataclasses.replace(spec, labels=str(labels))
    return specs


def resolve_datasets(names: list[str], registry: str | None = None) -> list:
    """DatasetSpecs for names or aliases: the extra registry YAML first, then the packaged one."""
    from ..data.registry import get_dataset

    extra = load_extra_registry(registry) if registry else {}
    specs = []
    for name in names:
        found = [s for s in extra.values() if _key(name) in {_key(a) for a in (s.name, *s.aliases)}]
        specs.append(found[0] if found else get_dataset(name))
    dup = sorted({s.name for s in specs if sum(t.name == s.name for t in specs) > 1})
    if dup:
        raise ValueError(f"--datasets names the same data set twice (via an alias): {dup}")
    return specs


def load_image_roots(
    path: str | os.PathLike, registry: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Read a YAML mapping data set name (or alias) -> image folder.

    Relative folders are taken relative to the YAML file. Names are resolved through the registry
    (and the extra ``registry`` YAML) so that a typo fails here, naming the file and the key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"image-roots file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: expected a mapping 'dataset name: image folder', got {type(raw).__name__}"
        )
    roots: dict[str, Path] = {}
    for key, folder in raw.items():
        try:
            name = resolve_datasets([str(key)], registry)[0].name
        except ValueError as err:
            raise ValueError(f"{path}: key {key!r}: {err}") from None
        if not isinstance(folder, str) or not folder.strip():
            raise ValueError(f"{path}: {key!r} must map to a folder path, got {folder!r}")
        folder_path = Path(os.path.expanduser(folder))
        roots[name] = folder_path if folder_path.is_absolute() else (path.parent / folder_path)
    return roots
