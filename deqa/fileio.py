"""Small file helpers shared across deqa: content digests and atomic writes (no torch, no numpy).

Atomic writes: every file a later run reads back to decide what to do (a resume counter, a cache
stamp, a manifest, a results file rewritten in place, a downloaded archive) is written to a temp
file beside its target and renamed into place, so a process killed mid-write leaves either the
old file or the new one, never a torn one that breaks the next run's ``json.loads`` or ``int``.
There is no fsync: the failure guarded against is a killed job, not a power cut, and an fsync per
progress tick of a long render would cost more than it protects.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["file_digest", "atomic_write", "write_text_atomic"]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, block_size: int = 1 << 20,
                **params: Any) -> str:
    """Hex digest of a file's bytes, read in ``block_size`` blocks (Python 3.10 lacks
    ``hashlib.file_digest``); ``params`` go to the hash (e.g. ``digest_size=16`` for blake2b)."""
    h = hashlib.new(algorithm, **params)
    with open(path, "rb") as f:
        while block := f.read(block_size):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; rename it onto ``path`` when the block ends
    cleanly, delete it when the block raises (``path`` then keeps what it held before).

    ``mode`` is ``"w"`` (text, ``encoding`` and ``newline`` apply) or ``"wb"``. The temp file's
    name is unique per call, so two writers never share one; the last rename wins.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    # Not tempfile.mkstemp: its files are mode 0600, and the target must get the usual umask
    # permissions. Mode "x" creates the file (as open() always does, 0666 & ~umask) or fails.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    text = {"encoding": encoding, "newline": newline} if mode == "w" else {}
    try:
        with open(tmp, mode.replace("w", "x"), **text) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """``Path.write_text`` that never leaves a torn file (see :func:`atomic_write`)."""
    with atomic_write(path, encoding=encoding) as f:
        f.write(text)
