"""Turn what a user types after ``deqa-score`` into the ordered list of images to score.

Accepted, in any mix and in the order given:

- image files (any name; a path that does not exist is kept, so it is reported as a failure
  for that input rather than aborting the whole job);
- directories: their image files (by extension), sorted; ``recursive=True`` descends into
  sub-folders; hidden files and folders (``.name``, e.g. macOS ``._x.jpg``) are skipped;
- glob patterns (``"photos/**/*.png"``, quoted so the shell does not expand them);
- manifests, recognised by extension: ``.txt`` (one path per line; blank lines and ``#``
  comments ignored), ``.csv``/``.tsv`` (a column named image/path/image_path/file/filename),
  ``.jsonl`` (an ``"image"`` field per line). Relative paths in a manifest are resolved against
  the manifest's folder.

Duplicates are dropped (first occurrence kept, under the name it was given) because results are
keyed by input name. Two names are the same input when they name the same directory entry:
``sub/../a.jpg`` from a manifest in ``sub/`` and ``a.jpg`` typed on the command line are one.
Problems with the arguments themselves raise :class:`InputError` naming the argument, file and
line.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .imageio import IMAGE_EXTENSIONS
from .jsonl import iter_jsonl

__all__ = [
    "InputError",
    "expand_inputs",
    "read_manifest",
    "MANIFEST_EXTENSIONS",
    "MANIFEST_PATH_COLUMNS",
]

MANIFEST_EXTENSIONS = frozenset({".txt", ".csv", ".tsv", ".jsonl"})
# Column names (case-insensitive) that hold the image path in CSV manifests, in priority order.
MANIFEST_PATH_COLUMNS = ("image", "path", "image_path", "file", "filename")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input argument (directory, glob, manifest) cannot be expanded; the message says why."""


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_in_dir(folder: Path, recursive: bool, extensions: frozenset[str]) -> list[str]:
    candidates = _walk(folder) if recursive else folder.glob("*")
    found = [
        p
        for p in candidates
        if p.suffix.lower() in extensions and p.is_file() and not _is_hidden(p, folder)
    ]
    return [str(p) for p in sorted(found)]


def _walk(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, into symlinked sub-folders too (a data set assembled from links
    is common), each real folder once, so a link back up the tree does not loop."""
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in files:
            yield Path(root) / name


def _resolve(entry: str, base: Path) -> str:
    path = Path(os.path.expanduser(entry))
    return str(path if path.is_absolute() else base / path)


def read_manifest(path: str | Path) -> list[str]:
    """Image paths listed in a ``.txt``, ``.csv``/``.tsv`` or ``.jsonl`` manifest."""
    path = Path(path)
    base = path.parent
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: manifest is not UTF-8 text ({err.reason})") from None
    out: list[str] = []
    if suffix == ".txt":
        for line in io.StringIO(text, newline=None):  # \n, \r\n, \r only (not U+2028 ...)
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(_resolve(line, base))
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(
            io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ","
        )
        columns = {c.strip().lower(): c for c in (reader.fieldnames or []) if c}
        column = next((columns[c] for c in MANIFEST_PATH_COLUMNS if c in columns), None)
        if column is None:
            raise InputError(
                f"{path}: no image column; found columns {list(reader.fieldnames or [])}, "
                f"expected one of {list(MANIFEST_PATH_COLUMNS)}"
            )
        for row in reader:
            value = (row.get(column) or "").strip()
            if not value:
                raise InputError(f"{path} line {reader.line_num}: empty {column!r} value")
            out.append(_resolve(value, base))
    elif suffix == ".jsonl":
        try:
            records = list(iter_jsonl(path, encoding="utf-8-sig"))
        except ValueError as err:  # invalid JSON, named by file and line
            raise InputError(str(err)) from None
        for line_no, record in records:
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("image"), str)
                or not record["image"]
            ):
                raise InputError(
                    f'{path} line {line_no}: expected an object with a non-empty "image" field'
                )
            out.append(_resolve(record["image"], base))
    else:
        raise InputError(
            f"{path}: unknown manifest type {suffix!r}; use one of {sorted(MANIFEST_EXTENSIONS)}"
        )
    if not out:
        raise InputError(f"{path}: manifest lists no images")
    return out


def _expand_one(arg: str, recursive: bool, extensions: frozenset[str]) -> list[str]:
    if not arg.strip():  # Path("") is ".": an empty argument (an unset shell variable) must not mean "here"
        raise InputError(f"{arg!r}: empty input path")
    path = Path(os.path.expanduser(arg))
    if path.is_dir():
        found = _images_in_dir(path, recursive, extensions)
        if not found:
            hint = "" if recursive else " (pass --recursive to include sub-folders)"
            raise InputError(
                f"{arg}: directory has no image files{hint}; looked for {', '.join(sorted(extensions))}"
            )
        return found
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        return read_manifest(path)
    if not path.exists() and _GLOB_CHARS & set(arg):
        matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
        files = [m for m in matches if Path(m).is_file() and not Path(m).name.startswith(".")]
        if not files:
            raise InputError(f"{arg}: pattern matches no files")
        return files
    # An image file, or a missing path: scoring reports "no such file" for this input.
    return [arg]


def _same_file_key(path: str, folders: dict[str, str]) -> str:
    # The real path of the folder plus the file's own name: "sub/../a.jpg" and "./a.jpg" meet,
    # also when "sub" is a symlink (plain normpath would get that wrong), while two differently
    # named symlinks to one image stay two inputs (each name gets its row, as the user asked).
    # Folders are cached: a 100k-image directory has one parent.
    folder, name = os.path.split(os.path.expanduser(path))
    if folder not in folders:
        folders[folder] = os.path.realpath(folder or os.curdir)
    return os.path.join(folders[folder], name)


def expand_inputs(
    args: Sequence[str] | Iterable[str],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> list[str]:
    """Expand files, directories, globs and manifests into an ordered, de-duplicated path list."""
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    out: dict[str, str] = {}  # same-file key -> the name first given
    folders: dict[str, str] = {}
    for arg in args:
        for item in _expand_one(str(arg), recursive, exts):
            out.setdefault(_same_file_key(item, folders), item)
    return list(out.values())
