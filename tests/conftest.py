"""Suite-wide settings: offline, deterministic, and gentle on a 2-core machine."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --- tiny random VLMs (owned by the VLM scoring tests; reused by training tests) -----------------
# Each family is built once per test session (about a second each) into a session temp folder, and
# loaded once; tests must not modify the loaded model in place (copy it, or build a new one).
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vlm_path(tmp_path_factory):
    """``tiny_vlm_path(family, **build_kwargs) -> Path``: a saved tiny VLM folder, built once."""
    cache = {}

    def get(family: str, **kwargs):
        key = (family, tuple(sorted(kwargs.items())))
        if key not in cache:
            from deqa.models.tiny import build_tiny_vlm

            cache[key] = build_tiny_vlm(family, tmp_path_factory.mktemp(f"tiny-{family}"), **kwargs)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def tiny_vlm(tiny_vlm_path):
    """``tiny_vlm(family, **build_kwargs) -> (model, processor)``, loaded once, in eval mode."""
    cache = {}

    def get(family: str, **kwargs):
        key = (family, tuple(sorted(kwargs.items())))
        if key not in cache:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            path = tiny_vlm_path(family, **kwargs)
            model = AutoModelForImageTextToText.from_pretrained(path).eval()
            cache[key] = (model, AutoProcessor.from_pretrained(path))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def sample_images():
    """Five small RGB PIL images of different content, sizes and aspect ratios."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(64, 48), (30, 90), (120, 120), (200, 60), (50, 50)]
    images = []
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if i % 2:  # smooth gradient vs noise, so images really differ
            base = np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()
        images.append(Image.fromarray(base, "RGB"))
    return images


# --- a fresh Python process (import-time checks: what a cold start really loads) -----------------
@pytest.fixture(scope="session")
def run_fresh_python():
    """``run_fresh_python(code) -> stdout``: run ``code`` in a new interpreter with this checkout on
    PYTHONPATH; fails the test with the process's stderr if it exits non-zero."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def run(code: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run
