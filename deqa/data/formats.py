"""Readers for IQA label files: one :class:`LabelTable` from any supported layout.

Formats (``format=`` or auto-detected from the extension and the columns / keys found):

``iqa-csv``      the CSVs of the nine data sets shipped in deqa/data/labels (columns ``image``,
                 a score column ``mos`` | ``dmos`` | ``elo``, optional ``std``, ``split``, and
                 for KonIQ the rating histogram ``c1..c5``);
``pyiqa``        pyiqa's ``meta_info_*.csv`` (image ``img_name`` | ``dist_name`` | ``Image name``,
                 score ``mos`` | ``dmos`` | ``MOS`` | ``elo_score``, numeric split 0/1/2 =
                 train/val/test);
``deqa-json``    DeQA-Score train/test JSON: a list of ``{"image", "gt_score", "std",
                 "gt_score_norm", "std_norm", "level_probs" (excellent..bad), ...}``;
``qalign-json``  Q-Align JSON: ``{"image" | "img_path", "gt_score"}`` or training entries whose
                 score is only in ``"id": "<name>-><score>"``.

Scores are returned raw (the data set's own scale); rescaling to the level scale is
deqa.data.labeling's job. Column/key names can be overridden for CSVs with other headers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["LABEL_FORMATS", "LabelTable", "read_labels", "detect_format"]

LABEL_FORMATS = ("iqa-csv", "pyiqa", "deqa-json", "qalign-json")

_IQA_IMAGE = ("image",)
_IQA_SCORE = ("mos", "dmos", "elo")
_PYIQA_IMAGE = ("dist_name", "img_name", "Image name", "image_name", "name")
_PYIQA_SCORE = ("mos", "dmos", "MOS", "DMOS", "elo_score", "score")
_PYIQA_SPLITS = {"0": "train", "1": "val", "2": "test"}
_HIST_DEFAULT = ("c1", "c2", "c3", "c4", "c5")


@dataclass
class LabelTable:
    """Labels read from one file, in file order. Scores on the data set's own scale.

    images [N] str; mos [N] float; std [N] float (NaN = missing) or None when the file has no
    std at all; split [N] str or None; histogram [N, K] or None; mos_norm/std_norm [N] when the
    file already carries level-scale values (DeQA-Score JSON); extra: other per-row fields
    (CSV cells kept as strings);
    locations [N]: where each row came from ("line 12"), for error messages.
    """

    path: Path | None
    format: str
    images: list[str]
    mos: np.ndarray
    std: np.ndarray | None = None
    split: list[str] | None = None
    histogram: np.ndarray | None = None
    mos_norm: np.ndarray | None = None
    std_norm: np.ndarray | None = None
    extra: dict[str, list] = field(default_factory=dict)
    locations: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def where(self, i: int) -> str:
        """Human-readable location of row i: '<file> line 13 (image 'a.jpg')'."""
        loc = self.locations[i] if i < len(self.locations) else f"row {i}"
        name = str(self.path) if self.path is not None else "<labels>"
        return f"{name} {loc} (image {self.images[i]!r})"

    def named_columns(self) -> dict[str, list]:
        """The per-row columns besides image, score, std and histogram, by their name in the file:
        ``extra`` and, under its own header, the split column (which the reader keeps apart)."""
        columns = dict(self.extra)
        if self.split is not None:
            columns[self.columns.get("split") or "split"] = self.split
        return columns

    def select(self, mask) -> LabelTable:
        """The rows where ``mask`` is True, as a new table."""
        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)

        def take(seq):
            return None if seq is None else [seq[i] for i in idx]

        def take_arr(arr):
            return None if arr is None else arr[idx]

        return LabelTable(
            path=self.path,
            format=self.format,
            images=take(self.images),
            mos=self.mos[idx],
            std=take_arr(self.std),
            split=take(self.split),
            histogram=take_arr(self.histogram),
            mos_norm=take_arr(self.mos_norm),
            std_norm=take_arr(self.std_norm),
            extra={k: take(v) for k, v in self.extra.items()},
            locations=take(self.locations),
            columns=dict(self.columns),
        )


# --------------------------------------------------------------------------------------------
# Detection


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _load_json(path: Path) -> list:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc}); expected a list of label entries"
        ) from None
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) for e in data):
        raise ValueError(
            f"{path}: expected a non-empty JSON list of objects (DeQA-Score or Q-Align label file), "
            f"got {type(data).__name__}"
        )
    return data


def _json_format(path: Path, entries: list[dict]) -> str:
    keys = set().union(*(e.keys() for e in entries[:50]))
    if "gt_score" in keys and keys & {"std", "std_norm", "gt_score_norm", "level_probs"}:
        return "deqa-json"
    if keys & {"image", "img_path"} and ("gt_score" in keys or "id" in keys):
        return "qalign-json"
    raise ValueError(
        f"{path}: unknown JSON label layout; keys found: {sorted(keys)}. Expected DeQA-Score "
        "({'image', 'gt_score', 'std', ...}) or Q-Align ({'image'|'img_path', 'gt_score'} or "
        "{'image', 'id': '<name>-><score>'}); pass --format to choose explicitly"
    )


def detect_format(path: str | Path) -> str:
    """Guess the label format from the extension and the header / keys. Raises if unknown."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_format(path, _load_json(path))
    if suffix == ".csv":
        header = _csv_header(path)
        if "image" in header and any(c in header for c in _IQA_SCORE):
            return "iqa-csv"
        if any(c in header for c in _PYIQA_IMAGE) and any(c in header for c in _PYIQA_SCORE):
            return "pyiqa"
        raise ValueError(
            f"{path}: unknown CSV label layout; columns found: {header}. Expected deqa's "
            f"(image + one of {list(_IQA_SCORE)}) or pyiqa's (one of {list(_PYIQA_IMAGE)} + one of "
            f"{list(_PYIQA_SCORE)}); pass --image-column/--score-column or --format"
        )
    raise ValueError(
        f"{path}: cannot tell the label format from the extension {suffix!r}; use .csv or .json, or pass --format"
    )


# --------------------------------------------------------------------------------------------
# Readers


def _pick(
    header: list[str],
    override: str | None,
    candidates: tuple[str, ...],
    what: str,
    path: Path,
    required: bool = True,
) -> str | None:
    if override is not None:
        if override not in header:
            raise ValueError(f"{path}: {what} column {override!r} not found; columns: {header}")
        return override
    for name in candidates:
        if name in header:
            return name
    if required:
        raise ValueError(f"{path}: no {what} column (tried {list(candidates)}); columns: {header}")
    return None


def _std_array(std: list[float]) -> np.ndarray | None:
    """The std column as floats; None when every value is missing (NaN): an all-empty std
    column (SPAQ, AGIQA-3K here) means the data set has no std, not a std per image."""
    arr = np.asarray(std, dtype=np.float64)
    return None if np.isnan(arr).all() else arr


def _to_float(text: str, path: Path, line: int, column: str, allow_empty: bool) -> float:
    text = (text or "").strip()
    if not text:
        if allow_empty:
            return float("nan")
        raise ValueError(f"{path} line {line}: column {column!r} is empty")
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{path} line {line}: column {column!r} = {text!r} is not a number"
        ) from None


def _read_csv(
    path: Path,
    fmt: str,
    image_column: str | None,
    score_column: str | None,
    std_column: str | None,
    split_column: str | None,
    histogram_columns: tuple[str, ...] | None,
) -> LabelTable:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty CSV (no header)")
        rows = list(reader)
    if fmt == "iqa-csv":
        img_c = _pick(header, image_column, _IQA_IMAGE, "image", path)
        score_c = _pick(header, score_column, _IQA_SCORE, "score", path)
    else:
        img_c = _pick(header, image_column, _PYIQA_IMAGE, "image", path)
        score_c = _pick(header, score_column, _PYIQA_SCORE, "score", path)
    std_c = _pick(header, std_column, ("std",), "std", path, required=False)
    split_c = _pick(header, split_column, ("split",), "split", path, required=False)
    if histogram_columns is None:
        hist_c = _HIST_DEFAULT if all(c in header for c in _HIST_DEFAULT) else None
    else:
        missing = [c for c in histogram_columns if c not in header]
        if missing:
            raise ValueError(f"{path}: histogram columns {missing} not found; columns: {header}")
        hist_c = tuple(histogram_columns)
    col = {name: i for i, name in enumerate(header)}
    used = {img_c, score_c, std_c, split_c, *(hist_c or ())}
    extra_cols = [c for c in header if c not in used]

    images, mos, std, split, hist, locs = [], [], [], [], [], []
    extra: dict[str, list] = {c: [] for c in extra_cols}
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise ValueError(f"{path} line {n}: {len(row)} fields but the header has {len(header)}")
        image = row[col[img_c]].strip()
        if not image:
            raise ValueError(f"{path} line {n}: column {img_c!r} (image) is empty")
        images.append(image)
        mos.append(_to_float(row[col[score_c]], path, n, score_c, allow_empty=False))
        if std_c is not None:
            std.append(_to_float(row[col[std_c]], path, n, std_c, allow_empty=True))
        if split_c is not None:
            value = row[col[split_c]].strip()
            split.append(_PYIQA_SPLITS.get(value, value) if fmt == "pyiqa" else value)
        if hist_c is not None:
            hist.append([_to_float(row[col[c]], path, n, c, allow_empty=False) for c in hist_c])
        for c in extra_cols:
            extra[c].append(row[col[c]])
        locs.append(f"line {n}")
    if not images:
        raise ValueError(f"{path}: no label rows after the header")
    std_arr = _std_array(std) if std_c is not None else None
    return LabelTable(
        path=path,
        format=fmt,
        images=images,
        mos=np.asarray(mos, dtype=np.float64),
        std=std_arr,
        split=split if split_c is not None else None,
        histogram=np.asarray(hist, dtype=np.float64) if hist_c is not None else None,
        extra=extra,
        locations=locs,
        columns={
            "image": img_c,
            "score": score_c,
            "std": std_c or "",
            "split": split_c or "",
            "histogram": ",".join(hist_c or ()),
        },
    )


def _json_number(entry: dict, key: str, path: Path, i: int, required: bool) -> float:
    value = entry.get(key)
    if value is None:
        if required:
            raise ValueError(f"{path} entry {i}: missing key {key!r}; keys: {sorted(entry)}")
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path} entry {i}: {key!r} = {value!r} is not a number") from None


def _read_json(path: Path, fmt: str, entries: list[dict], split_column: str | None) -> LabelTable:
    images, mos, std, mos_norm, std_norm, split, locs, ids = [], [], [], [], [], [], [], []
    has_std = fmt == "deqa-json" and any("std" in e for e in entries)
    has_norm = fmt == "deqa-json" and all("gt_score_norm" in e for e in entries)
    has_std_norm = fmt == "deqa-json" and all("std_norm" in e for e in entries)
    for i, e in enumerate(entries):
        image = e.get("image", e.get("img_path"))
        if not isinstance(image, str) or not image:
            raise ValueError(
                f"{path} entry {i}: no image path ('image' or 'img_path'); keys: {sorted(e)}"
            )
        if "gt_score" in e or fmt == "deqa-json":
            score = _json_number(e, "gt_score", path, i, required=True)
        else:
            # Q-Align training entries carry the score only in the id: "<name>-><score>".
            ident = str(e.get("id", ""))
            if "->" not in ident:
                raise ValueError(
                    f"{path} entry {i}: no 'gt_score' and no '<name>-><score>' id; keys: {sorted(e)}"
                )
            try:
                score = float(ident.rsplit("->", 1)[1])
            except ValueError:
                raise ValueError(
                    f"{path} entry {i}: id {ident!r} does not end in '-><score>'"
                ) from None
        images.append(image)
        mos.append(score)
        if has_std:
            std.append(_json_number(e, "std", path, i, required=False))
        if has_norm:
            mos_norm.append(_json_number(e, "gt_score_norm", path, i, required=True))
        if has_std_norm:
            std_norm.append(_json_number(e, "std_norm", path, i, required=False))
        if split_column is not None:
            if split_column not in e:
                raise ValueError(
                    f"{path} entry {i}: split key {split_column!r} missing; keys: {sorted(e)}"
                )
            split.append(str(e[split_column]))
        ids.append(str(e.get("id", "")))
        locs.append(f"entry {i}")
    std_arr = _std_array(std) if has_std else None
    return LabelTable(
        path=path,
        format=fmt,
        images=images,
        mos=np.asarray(mos, dtype=np.float64),
        std=std_arr,
        split=split if split_column is not None else None,
        mos_norm=np.asarray(mos_norm) if has_norm else None,
        std_norm=np.asarray(std_norm) if has_std_norm else None,
        extra={"id": ids} if any(ids) else {},
        locations=locs,
        columns={
            "image": "image",
            "score": "gt_score",
            "std": "std" if has_std else "",
            "split": split_column or "",
        },
    )


def read_labels(
    path: str | Path,
    format: str = "auto",
    *,
    image_column: str | None = None,
    score_column: str | None = None,
    std_column: str | None = None,
    split_column: str | None = None,
    histogram_columns: tuple[str, ...] | None = None,
) -> LabelTable:
    """Read a label file into a :class:`LabelTable` (raw scores, file order).

    ``format``: "auto" (detect) or one of LABEL_FORMATS. Column overrides apply to CSVs
    (``split_column`` also names the split key of JSON entries). Raises FileNotFoundError for a
    missing file and ValueError naming the file, line/entry and column for anything malformed.
    """
    path = Path(path)
    if format != "auto" and format not in LABEL_FORMATS:
        raise ValueError(
            f"unknown label format {format!r}; choose 'auto' or one of {LABEL_FORMATS}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if format == "auto":
        overrides = image_column or score_column
        if path.suffix.lower() == ".csv" and overrides:
            format = "iqa-csv" if "image" in _csv_header(path) else "pyiqa"
        else:
            format = detect_format(path)
    if format in ("iqa-csv", "pyiqa"):
        return _read_csv(
            path, format, image_column, score_column, std_column, split_column, histogram_columns
        )
    entries = _load_json(path)
    return _read_json(path, format, entries, split_column)
