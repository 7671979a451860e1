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

__all__ = ["file_digest", "weights_fingerprint", "read_weights", "atomic_write", "write_text_atomic"]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, block_size: int = 1 << 20,
                **params: Any) -> str:
    """Hex digest of a file's bytes, read in ``block_size`` blocks (Python 3.10 lacks
    ``hashlib.file_digest``); ``params`` go to the hash (e.g. ``digest_size=16`` for blake2b)."""
    h = hashlib.new(algorithm, **params)
    with open(path, "rb") as f:
        while block := f.read(block_size):
            h.update(block)
    return h.hexdigest()


# What a model folder's weights are stored in (transformers, peft, torch checkpoints).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_WHOLE_UP_TO = 256 << 20  # files up to this size are hashed whole (adapters, small models)
_SAMPLES, _SAMPLE_SIZE = 32, 1 << 16


def weights_fingerprint(folder: str | os.PathLike) -> str:
    """12 hex digits that change when any weight file directly in ``folder`` changes: every file of
    :data:`WEIGHT_SUFFIXES`, its name, size and bytes, hashed whole up to 256 MB; a larger file by
    its size and 32 evenly spaced 64 KB samples (a 15 GB checkpoint in milliseconds, where hashing it
    whole would cost ~10 s beside loading it). Training moves nearly every weight, so a retrained
    model differs in the samples; two copies of one checkpoint get the same fingerprint wherever they
    are. "" when the folder holds no weight file."""
    h = hashlib.blake2b(digest_size=6)
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= _WHOLE_UP_TO:
                while block := fh.read(1 << 20):
                    h.update(block)
            else:
                for i in range(_SAMPLES):
                    fh.seek((size - _SAMPLE_SIZE) * i // (_SAMPLES - 1))
                    h.update(fh.read(_SAMPLE_SIZE))
    return h.hexdigest() if files else ""


def read_weights(path: str | os.PathLike, framework: str = "numpy") -> dict:
    """A safetensors file's tensors (``framework`` "numpy" or "pt"); a truncated or foreign file
    is a ValueError naming it, not safetensors' bare "Error while deserializing header"."""
    if framework == "numpy":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err}); the weights are damaged or not deqa's") from None


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                 newline: str | None = None, errors: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; rename it onto ``path`` when the block ends
    cleanly, delete it when the block raises (``path`` then keeps what it held before).

    ``mode`` is ``"w"`` (text, ``encoding``, ``newline`` and ``errors`` apply) or ``"wb"``. The temp file's
    name is unique per call, so two writers never share one; the last rename wins.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    # Not tempfile.mkstemp: its files are mode 0600, and the target must get the usual umask
    # permissions. Mode "x" creates the file (as open() always does, 0666 & ~umask) or fails.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    text = {"encoding": encoding, "newline": newline, "errors": errors} if mode == "w" else {}
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
