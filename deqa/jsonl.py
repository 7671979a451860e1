"""JSON Lines files: read line by line with file + line in every error; append with a flush per
line; survive a process killed in the middle of a line.

deqa's resumable outputs (``deqa-score -o x.jsonl``, ``deqa-eval``'s ``predictions.jsonl``) are
appended one line at a time, so a killed process leaves at most one incomplete line, at the end
and without its newline. :class:`JsonlWriter` cuts such a line before it appends (so the next
line does not glue onto it) and readers may drop it (``skip_torn_tail=True``) instead of failing.

Lines are split on ``"\\n"`` only: ``str.splitlines`` would also split on U+2028, U+0085 and
other characters that ``json.dumps(..., ensure_ascii=False)`` writes unescaped inside strings
(an image named ``a\\u2028b.jpg``).

A file name that is not valid UTF-8 (an old archive's Latin-1 ``caf\\xe9.jpg``) reaches Python as a
str holding lone surrogates (``os.fsdecode``'s surrogateescape), which UTF-8 cannot encode:
:func:`dumps` writes such a value with ``\\uXXXX`` escapes, so the file stays UTF-8 and
``json.loads`` gives back the very same str (a resumed run matches the name).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["iter_jsonl", "cut_torn_tail", "dumps", "JsonlWriter"]


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps(obj, ensure_ascii=False)``, or with every non-ASCII character escaped when the
    value holds lone surrogates (a file name that is not UTF-8; see the module's notes)."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, **kwargs)
    return text


def iter_jsonl(
    path: str | os.PathLike,
    *,
    skip_torn_tail: bool = False,
    hint: str = "",
    encoding: str = "utf-8",
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed JSON value)`` for every non-blank line of ``path``.

    A line that is not valid JSON raises ValueError ``"<path> line <n>: not valid JSON (...)"``,
    followed by ``"; <hint>"`` when given (what the user can do about it). With
    ``skip_torn_tail``, a last line without its newline (a write that was interrupted) is
    dropped with a warning instead of parsed: the caller redoes what it held. Undecodable
    bytes raise ValueError naming the file.
    """
    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    try:
        with path.open(encoding=encoding, newline="\n") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if skip_torn_tail and not line.endswith("\n"):
                    warnings.warn(
                        f"{path} line {lineno}: ignoring an incomplete last line (an interrupted "
                        "write); what it held is redone",
                        stacklevel=2,
                    )
                    return
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path} line {lineno}: not valid JSON ({err.msg} at column {err.colno}){suffix}"
                    ) from None
                yield lineno, obj
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not {encoding} text ({err.reason}){suffix}") from None


def cut_torn_tail(path: str | os.PathLike) -> int:
    """Truncate ``path`` after its last newline, removing an incomplete last line (a process
    died mid-write). Returns the number of bytes cut (0 for a missing, empty or intact file)."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Scan back for the last newline block by block: the torn line is at most one record.
        pos, keep = size, 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            idx = f.read(step).rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        f.truncate(keep)
        return size - keep


class JsonlWriter:
    """Appends one JSON value per line to a file (created with its folder; an incomplete last
    line is cut first) or to an open text stream, flushing after every line, so a killed process
    loses at most the line being written."""

    def __init__(self, target: str | os.PathLike | TextIO):
        if isinstance(target, (str, os.PathLike)):
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            cut_torn_tail(path)
            self._f: TextIO = path.open("a", encoding="utf-8")
            self._owns = True
        else:
            self._f, self._owns = target, False

    def write(self, obj: Any) -> None:
        self._f.write(dumps(obj) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._owns:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
