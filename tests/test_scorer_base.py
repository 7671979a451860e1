"""The shared Scorer pipeline: order, failures, batching, workers."""

import numpy as np
import pytest
from eval_helpers import BrightnessScorer
from PIL import Image

from deqa.imageio import ImageLoadError
from deqa.results import ScoreFailure, ScoreResult


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, v in enumerate([10, 200, 90, 250, 0]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (v, v, v)).save(p)
        paths.append(str(p))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    paths.insert(2, str(bad))
    paths.append(str(tmp_path / "missing.png"))
    return paths


@pytest.mark.parametrize("needs_torch", [True, False])
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("reverse", [False, True])
def test_iter_score_keeps_input_order_and_reports_failures(images, num_workers, reverse, needs_torch):
    # needs_torch=False: the torch-free pipeline (forked decode workers instead of a DataLoader)
    # must behave exactly like the DataLoader one.
    scorer = BrightnessScorer(reverse_batches=reverse)
    scorer.needs_torch = needs_torch
    out = list(scorer.iter_score(images, batch_size=3, num_workers=num_workers))
    assert [r.input for r in out] == images
    assert isinstance(out[2], ScoreFailure) and "not an image" in out[2].error
    assert isinstance(out[-1], ScoreFailure) and "no such file" in out[-1].error
    scores = [r.score_0_1 for r in out if isinstance(r, ScoreResult)]
    np.testing.assert_allclose(scores, np.array([10, 200, 90, 250, 0]) / 255.0, atol=1e-12)


def test_score_accepts_pil_and_raises_on_bad_input(images):
    scorer = BrightnessScorer()
    res = scorer.score(Image.new("RGB", (4, 4), (255, 255, 255)))
    assert res[0].input == "<image 0>" and res[0].score == pytest.approx(5.0)
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        scorer.score(images)


def test_batch_size_must_be_positive(images):
    with pytest.raises(ValueError, match="batch_size"):
        list(BrightnessScorer().iter_score(images, batch_size=0))


def test_torch_free_pipeline_stops_its_workers_when_abandoned(tmp_path):
    """Leaving the loop early shuts the decode workers down instead of decoding the rest."""
    import multiprocessing as mp

    paths = []
    for i in range(40):
        p = tmp_path / f"g{i}.png"
        Image.new("RGB", (8, 8), (i, i, i)).save(p)
        paths.append(str(p))
    scorer = BrightnessScorer()
    scorer.needs_torch = False
    it = scorer.iter_score(paths, batch_size=2, num_workers=2)
    first = next(it)
    assert first.input == paths[0]
    assert len(mp.active_children()) == 2  # the pool is up
    it.close()
    assert mp.active_children() == []
