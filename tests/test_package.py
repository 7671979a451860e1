"""The package as users get it: the lazy public API, every module's __all__, and a built wheel
that carries everything deqa reads at runtime (checked by using it from outside the source tree)."""

import importlib
import pkgutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import deqa

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_lazy_and_complete():
    code = """
        import sys
        import deqa
        for name in deqa.__all__:
            getattr(deqa, name)
        assert callable(deqa.load_scorer)
        heavy = [m for m in ("transformers", "peft", "accelerate") if m in sys.modules]
        assert not heavy, heavy
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_every_name_in_every_all_exists():
    for info in pkgutil.walk_packages(deqa.__path__, "deqa."):
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", [])
        assert len(set(names)) == len(names), f"{info.name}.__all__ lists a name twice"
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{info.name}.__all__ lists missing names {missing}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: offline, with the setuptools of this environment (make installs it).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("deqa-*.whl")
    return path


def test_wheel_ships_the_runtime_files(wheel):
    from deqa.data.registry import get_dataset, list_datasets

    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "deqa/py.typed",
        "deqa/data/datasets.yaml",
        "deqa/data/reference_results.csv",  # deqa-eval --compare
        "deqa/assets/default_model/deqa_baseline.json",
        "deqa/assets/default_model/model.safetensors",
        "deqa/assets/default_model/MODEL_CARD.md",
        "deqa/assets/examples/example.jpg",
    }
    for name in list_datasets():
        expected.add(get_dataset(name).label_path.relative_to(ROOT).as_posix())
    assert expected <= names, sorted(expected - names)
    # Every tracked file under deqa/ is in the wheel, except caches.
    tracked = subprocess.run(
        ["git", "ls-files", "deqa"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if tracked:  # a source tree without git (an sdist) has nothing to compare with
        assert set(tracked) <= names, sorted(set(tracked) - names)


def test_installed_wheel_scores_and_compares_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    code = f"""
        import deqa
        from deqa.data.registry import get_dataset
        from deqa.evaluation.references import load_references
        assert deqa.__file__.startswith({str(target)!r}), deqa.__file__
        refs = load_references()
        assert any(r.model == "DeQA-Score" and r.dataset == "koniq10k" for r in refs)
        assert len(get_dataset("koniq10k").read_labels()) == 10073
        example = {str(target / "deqa/assets/examples/example.jpg")!r}
        result = deqa.load_scorer().score(example)[0]
        assert 1.0 <= result.score <= 5.0 and result.details
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
