"""The README's promises about the repository: a true file tree and a two-command set-up."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TREE_SCOPE = ("deqa/", "bench/", "scripts/", "configs/", "eval/", "tests/")


def _code_block_after(heading: str) -> str:
    section = README[README.index(f"## {heading}\n") :]
    return re.search(r"```[a-z]*\n(.*?)```", section, flags=re.S).group(1)


def _tree() -> tuple[list[str], list[str]]:
    """(files, folders) of the File tree block, as repository paths (folders end in '/')."""
    files, folders, stack = [], [], []
    for line in _code_block_after("File tree").splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(n for _, n in stack) + name
        if name.endswith("/"):
            stack.append((indent, name))
            folders.append(path)
        else:
            files.append(path)
    return files, folders


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    # Tracked files plus new ones git does not ignore: a file added in this change counts too.
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0 or not out.stdout:
        pytest.skip("not a git checkout")
    return [p for p in out.stdout.split() if (ROOT / p).exists()]


def test_every_file_in_the_tree_exists(tracked):
    files, folders = _tree()
    assert len(files) == len(set(files)), "a file is listed twice"
    assert [f for f in files if f not in tracked] == []
    assert [d for d in folders if not any(t.startswith(d) for t in tracked)] == []


def test_every_file_is_in_the_tree(tracked):
    files, folders = _tree()
    # A folder line covers its files only when the tree lists nothing inside it.
    leaves = [d for d in folders if not any(p != d and p.startswith(d) for p in files + folders)]
    unlisted = [
        t
        for t in tracked
        if t.startswith(TREE_SCOPE) and t not in files and not any(t.startswith(d) for d in leaves)
    ]
    assert unlisted == [], "add these to the README's File tree"


def test_set_up_is_make_demo_and_make_test():
    commands = [
        line.split("#")[0].strip()
        for line in _code_block_after("Set up").splitlines()
        if line.split("#")[0].strip()
    ]
    assert commands == ["make demo", "make test"]


def test_load_vlm_is_described_as_it_returns():
    # The README said load_vlm "returns the model, processor and DeQAConfig", and
    # `model, processor, cfg = load_vlm(...)` raised: it returns one LoadedVLM.
    from dataclasses import fields

    from deqa.models.loading import LoadedVLM, load_vlm

    assert load_vlm.__annotations__["return"] in ("LoadedVLM", LoadedVLM)
    described = re.search(r"returns a `LoadedVLM`\s+dataclass \(attributes ([^;]*);", README)
    assert described, "the README no longer says what load_vlm returns"
    assert re.findall(r"`(\w+)`", described.group(1)) == [f.name for f in fields(LoadedVLM)]
