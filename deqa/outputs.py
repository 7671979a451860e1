"""Write score results as JSONL / CSV / JSON (incrementally, resumable) or a terminal table.

Row schema (JSONL / JSON; CSV flattens ``probs`` to ``prob_<word>`` and ``details`` to
``detail_<key>`` columns)::

    {"input": "photos/a.jpg", "score": 3.91, "score_0_1": 0.7275, "level": "good",
     "std": 0.71, "probs": {"bad": 0.01, "poor": 0.04, "fair": 0.2, "good": 0.53, "excellent": 0.22},
     "model": "Qwen/Qwen2.5-VL-7B-Instruct", "details": {}}
    {"input": "photos/b.jpg", "error": "truncated image data (...)"}

Resuming: :func:`read_records` reads what an earlier (possibly interrupted) run wrote, so the
caller can skip those inputs; a half-written last line is cut off, but only after the whole
file has been checked to be a deqa result file (any other file is refused, untouched). Writers
append and flush every row, so an interrupted job loses at most the row being written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .fileio import atomic_write, write_text_atomic
from .jsonl import JsonlWriter, cut_torn_tail, dumps, iter_jsonl
from .results import ScoreFailure, ScoreResult

__all__ = [
    "FORMATS",
    "FILE_FORMATS",
    "format_for_path",
    "read_records",
    "drop_failures",
    "is_failure_row",
    "open_writer",
    "ResultWriter",
    "format_table",
    "record_of",
]

FORMATS = ("table", "json", "jsonl", "csv")
FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".json": "json"}
_BASE_COLUMNS = ("input", "score", "score_0_1", "level", "std")


def format_for_path(path: str | Path) -> str:
    """Output format implied by a file name; a clear error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_FORMATS:
        raise ValueError(
            f"-o {path}: cannot tell the format from {suffix or 'no extension'!r}; use .jsonl, .csv or .json (or pass --format)"
        )
    return FILE_FORMATS[suffix]


def record_of(result: ScoreResult | ScoreFailure) -> dict[str, Any]:
    """The JSON-able row for one result."""
    return result.to_dict()


# -- reading back (resume) --------------------------------------------------------------------
_RESUME_HINT = "cannot resume into this file"
# CSV has no escapes: a file name that is not UTF-8 (Python holds its bytes as lone surrogates) is
# written as its own bytes, as the file system has them, and read back to the same str on resume.
_CSV_ERRORS = "surrogateescape"
# Every CSV deqa writes has these columns (probability/detail columns vary by model).
_CSV_REQUIRED = (*_BASE_COLUMNS, "model", "error")
# A JSONL row as deqa writes it starts with this ("input" is ScoreResult/ScoreFailure's first field).
_JSONL_ROW_START = '{"input": '


def _is_result_row(row: Any) -> bool:
    return isinstance(row, dict) and "input" in row and ("score" in row or "error" in row)


def is_failure_row(row: dict[str, Any]) -> bool:
    """A row read back (:func:`read_records`) that records a failure: an error and no score."""
    return "error" in row and "score" not in row


def _torn_tail(path: Path) -> bytes:
    """The bytes after the last newline of ``path`` (b"" when it ends with one)."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        pos = size
        while pos > 0:  # scan back block by block: the torn line is at most one record
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            idx = f.read(step).rfind(b"\n")
            if idx >= 0:
                pos += idx + 1
                break
        f.seek(pos)
        return f.read()


def _csv_header(path: Path, text: str) -> list[str]:
    header = next(csv.reader([text.split("\n", 1)[0].rstrip("\r")]), [])
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        raise ValueError(
            f"{path}: not a deqa result file (its header {header} lacks {missing}); {_RESUME_HINT}"
        )
    return header


def read_records(path: str | Path, fmt: str) -> list[dict[str, Any]]:
    """Rows already in an output file (empty if it does not exist). Each has ``input`` and
    either ``score`` or ``error``. A half-written last row (a killed run) is cut off the file
    with a warning, so that input is scored again.

    A file that does not look like a deqa result file (a CSV without deqa's header, rows
    without ``input`` and ``score``/``error``, a last line that is not the start of a deqa row)
    raises ValueError and is left exactly as it was: nothing is cut before the whole file has
    been checked."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        return _read_records(path, fmt)
    except ValueError:
        guess = _sniff_format(path)
        if guess not in (None, fmt):  # e.g. `-o scores.csv --format jsonl`: say what is wrong
            raise ValueError(
                f"{path} holds deqa's {guess} output, but this run writes {fmt}: pass --format {guess} "
                f"to resume it, or choose another -o; the file is left as it is"
            ) from None
        raise


def drop_failures(path: str | Path, fmt: str, inputs: set[str]) -> int:
    """Remove the failure rows of ``inputs`` from a result file that :func:`read_records` has
    read (so it is deqa's, with no torn last row), rewriting it atomically; every other row stays
    as it was written. Returns how many rows went: ``deqa-score --retry-failed`` scores them again."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0 or not inputs:
        return 0

    def failed(row: dict) -> bool:
        return is_failure_row(row) and row.get("input") in inputs

    if fmt == "jsonl":
        lines = path.read_text(encoding="utf-8").split("\n")  # see deqa.jsonl: "\n" only
        keep = [line for line in lines if not (line.strip() and failed(json.loads(line)))]
        dropped = len(lines) - len(keep)
        text = "\n".join(keep)
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig", _CSV_ERRORS), newline="")))
        header, body = rows[0], rows[1:]
        # Judged as read_records reads a row (empty cells left out); written back as it was.
        keep = [row for row in body if not failed({k: v for k, v in zip(header, row, strict=False) if v})]
        dropped = len(body) - len(keep)
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows([header, *keep])
        text = buf.getvalue()
    elif fmt == "json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        keep = [row for row in rows if not failed(row)]
        dropped = len(rows) - len(keep)
        text = dumps(keep, indent=2) + "\n"
    else:
        raise ValueError(f"cannot rewrite format {fmt!r}")
    if dropped:
        with atomic_write(path, newline="", errors=_CSV_ERRORS if fmt == "csv" else None) as f:
            f.write(text)
    return dropped


def _sniff_format(path: Path) -> str | None:
    """Which of deqa's formats a file's first bytes look like (None: none of them)."""
    with open(path, "rb") as f:
        head = f.read(64).decode("utf-8-sig", errors="replace").lstrip()
    if head.startswith(_JSONL_ROW_START):
        return "jsonl"
    if head.startswith("["):
        return "json"
    if head.startswith(",".join(_BASE_COLUMNS[:2])):
        return "csv"
    return None


def _read_records(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        # Only a prefix of a row deqa was writing may be cut; any other unfinished last line
        # (a file with no newline at all, say) belongs to some other program's file.
        tail = _torn_tail(path).decode("utf-8", errors="replace").strip()
        if tail and not (tail.startswith(_JSONL_ROW_START) or _JSONL_ROW_START.startswith(tail)):
            raise ValueError(
                f"{path}: its last line (no newline at the end) is not the start of a deqa "
                f"result row; {_RESUME_HINT}"
            )
        rows = []
        for n, row in iter_jsonl(path, skip_torn_tail=True, hint=_RESUME_HINT):
            if not _is_result_row(row):
                raise ValueError(
                    f'{path} line {n}: not a deqa result row (no "input" with "score" or "error"); '
                    f"{_RESUME_HINT}"
                )
            rows.append(row)
        cut_torn_tail(path)
        return rows
    if fmt == "csv":
        text = path.read_bytes().decode("utf-8-sig", _CSV_ERRORS)  # a binary file fails the header check
        _csv_header(path, text)
        if not text.endswith("\n"):
            cut = text.rfind("\n") + 1
            warnings.warn(
                f"{path} line {text.count(chr(10)) + 1}: ignoring an incomplete last row (an "
                "interrupted write); what it held is redone",
                stacklevel=2,
            )
            cut_torn_tail(path)
            text = text[:cut]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
    if fmt == "json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg}); {_RESUME_HINT}") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err.reason}); {_RESUME_HINT}") from None
        if not isinstance(rows, list) or not all(_is_result_row(r) for r in rows):
            raise ValueError(f"{path}: not a JSON list of deqa result rows; {_RESUME_HINT}")
        return rows
    raise ValueError(f"cannot read back format {fmt!r}")


# -- writers ----------------------------------------------------------------------------------
class ResultWriter:
    """Appends rows to a file or stream; ``close`` finishes it."""

    def write(self, result: ScoreResult | ScoreFailure) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _JsonlWriter(ResultWriter):
    def __init__(self, target: Path | TextIO):
        self.out = JsonlWriter(target)

    def write(self, result):
        self.out.write(record_of(result))

    def close(self):
        self.out.close()


def _csv_columns(result: ScoreResult) -> list[str]:
    cols = list(_BASE_COLUMNS)
    cols += [f"prob_{w}" for w in (result.probs or {})]
    cols += [f"detail_{k}" for k in result.details]
    return cols + ["model", "error"]


def _csv_row(result: ScoreResult | ScoreFailure) -> dict[str, Any]:
    if isinstance(result, ScoreFailure):
        return {"input": result.input, "error": result.error}
    row = {c: getattr(result, c) for c in _BASE_COLUMNS}
    row.update({f"prob_{w}": p for w, p in (result.probs or {}).items()})
    row.update({f"detail_{k}": v for k, v in result.details.items()})
    row["model"] = result.model
    return {k: ("" if v is None else v) for k, v in row.items()}


class _CsvWriter(ResultWriter):
    """Columns come from the first scored row (or the existing header when resuming); failures
    seen before it wait so the header can include the model's probability/detail columns.

    A row with columns the header lacks (a resumed file that an earlier run started with
    failures only, so its header has no probability/detail columns) widens the header: a file
    is rewritten once with the wider header (atomically: a kill leaves the old file or the new
    one), so no value is dropped."""

    def __init__(
        self, stream: TextIO, owns: bool, columns: list[str] | None, path: Path | None = None
    ):
        self.stream, self.owns, self.path = stream, owns, path
        self.writer = (
            csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore") if columns else None
        )
        self.waiting: list[ScoreFailure] = []
        self.left_out: set[str] = set()

    def _start(self, columns: list[str]):
        self.writer = csv.DictWriter(self.stream, fieldnames=columns, extrasaction="ignore")
        self.writer.writeheader()
        for failure in self.waiting:
            self.writer.writerow(_csv_row(failure))
        self.waiting = []

    def _widen(self, extra: list[str]):
        fields = list(self.writer.fieldnames)
        # New probability/detail columns go where a fresh file has them: before model, error.
        at = fields.index("model") if "model" in fields else len(fields)
        fields[at:at] = extra
        if self.path is None:  # a stream cannot be rewritten: say what is left out
            warnings.warn(
                f"CSV output: columns {extra} are missing from the header already written; "
                "their values are left out (write to a file with -o to keep them)",
                stacklevel=3,
            )
            self.left_out.update(extra)
            return
        self.stream.close()
        with open(self.path, newline="", encoding="utf-8-sig", errors=_CSV_ERRORS) as f:
            rows = list(csv.DictReader(f))
        with atomic_write(self.path, newline="", errors=_CSV_ERRORS) as f:
            rewrite = csv.DictWriter(f, fieldnames=fields)
            rewrite.writeheader()
            rewrite.writerows(rows)
        self.stream = open(self.path, "a", newline="", encoding="utf-8", errors=_CSV_ERRORS)
        self.writer = csv.DictWriter(self.stream, fieldnames=fields, extrasaction="ignore")

    def write(self, result):
        if self.writer is None:
            if isinstance(result, ScoreFailure):
                self.waiting.append(result)
                return
            self._start(_csv_columns(result))
        row = _csv_row(result)
        extra = [c for c in row if c not in self.writer.fieldnames and c not in self.left_out]
        if extra:
            self._widen(extra)
        self.writer.writerow(row)
        self.stream.flush()

    def close(self):
        if self.writer is None and self.waiting:
            self._start(list(_BASE_COLUMNS) + ["model", "error"])
        self.stream.flush()
        if self.owns:
            self.stream.close()


class _JsonWriter(ResultWriter):
    """A JSON list cannot be appended to; it is rewritten atomically (temp file + rename) at
    most every ``interval`` seconds and on close, so the file on disk is always valid JSON."""

    def __init__(
        self, path: Path | None, stream: TextIO | None, rows: list[dict], interval: float = 5.0
    ):
        self.path, self.stream, self.rows, self.interval = path, stream, rows, interval
        self.last = time.monotonic()

    def _flush(self):
        if self.path is None:
            return
        write_text_atomic(self.path, dumps(self.rows, indent=2) + "\n")
        self.last = time.monotonic()

    def write(self, result):
        self.rows.append(record_of(result))
        if time.monotonic() - self.last >= self.interval:
            self._flush()

    def close(self):
        if self.path is not None:
            self._flush()
        else:
            self.stream.write(dumps(self.rows, indent=2) + "\n")
            self.stream.flush()


def open_writer(
    fmt: str, path: str | Path | None = None, *, stream: TextIO | None = None
) -> ResultWriter:
    """A writer for ``fmt`` appending to ``path`` (created if missing) or writing to ``stream``."""
    if fmt == "table":
        raise ValueError(
            "the table format is for the terminal; write files as .jsonl, .csv or .json"
        )
    if path is None:
        if stream is None:
            raise ValueError("open_writer needs a path or a stream")
        if fmt == "jsonl":
            return _JsonlWriter(stream)
        if fmt == "csv":
            return _CsvWriter(stream, owns=False, columns=None)
        return _JsonWriter(None, stream, [])
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        return _JsonlWriter(path)
    if fmt == "csv":
        columns = None
        if path.exists() and path.stat().st_size > 0:
            with open(path, newline="", encoding="utf-8-sig", errors=_CSV_ERRORS) as f:
                columns = next(csv.reader(f), None)
        return _CsvWriter(
            open(path, "a", newline="", encoding="utf-8", errors=_CSV_ERRORS), owns=True, columns=columns, path=path
        )
    if fmt == "json":
        return _JsonWriter(path, None, read_records(path, "json"))
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


# -- terminal table ---------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cell(text: str) -> str:
    # One line per row: control characters in a file name (a newline, a tab) as escapes.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: wide East Asian characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def format_table(results: Iterable[ScoreResult | ScoreFailure]) -> str:
    """A fixed-width table: input, score, score_0_1, level, std, any ``details`` columns, and
    the error for inputs that failed."""
    results = list(results)
    detail_keys: dict[str, None] = {}
    for r in results:
        if isinstance(r, ScoreResult):
            detail_keys.update(dict.fromkeys(r.details))
    has_std = any(isinstance(r, ScoreResult) and r.std is not None for r in results)
    has_error = any(isinstance(r, ScoreFailure) for r in results)
    header = (
        ["input", "score", "score_0_1", "level"] + (["std"] if has_std else []) + list(detail_keys)
    )
    header += ["error"] if has_error else []
    rows = []
    for r in results:
        if isinstance(r, ScoreFailure):
            row = [_cell(r.input)] + [""] * (len(header) - 2) + [_cell(r.error)]
        else:
            row = [_cell(r.input), _fmt(r.score), _fmt(r.score_0_1), r.level] + (
                [_fmt(r.std)] if has_std else []
            )
            row += [_fmt(r.details.get(k)) for k in detail_keys]
            row += [""] if has_error else []
        rows.append(row)
    widths = [
        max(len(h), *(_width(row[c]) for row in rows)) if rows else len(h)
        for c, h in enumerate(header)
    ]
    numeric = {c for c, h in enumerate(header) if h not in ("input", "level", "error")}
    out = io.StringIO()
    for row in [header] + rows:
        cells = [
            _pad(cell, w, right=c in numeric)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue()
