"""deqa.data.labeling: table -> level scale -> soft labels -> records and quality stats."""

import json

import numpy as np
import pytest

from deqa.data.formats import read_labels
from deqa.data.labeling import MosScale, build_labels, label_quality, normalize_table
from deqa.data.registry import get_dataset


def csv(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return read_labels(path)


def test_normalize_with_declared_scale(tmp_path):
    t = csv(tmp_path, "image,dmos,std\na,0,0.1\nb,0.5,\nc,1,0.2\n")
    m, s = normalize_table(t, MosScale((0, 1), lower_better=True))
    np.testing.assert_allclose(m, [5, 3, 1])
    np.testing.assert_allclose(s, [0.4, np.nan, 0.8])
    m, s = normalize_table(t, MosScale((0, 1), ignore_std=True))
    assert np.isnan(s).all()


def test_observed_scale_is_the_min_max_of_the_file(tmp_path):
    t = csv(tmp_path, "image,mos\na,10\nb,30\nc,20\n")
    scale = MosScale.observed(t)
    assert scale.mos_range == (10.0, 30.0)
    np.testing.assert_allclose(normalize_table(t, scale)[0], [1, 5, 3])
    with pytest.raises(ValueError, match="constant"):
        MosScale.observed(csv(tmp_path, "image,mos\na,1\nb,1\n", "c.csv"))


@pytest.mark.parametrize(
    "text, scale, pattern",
    [
        (
            "image,mos\na,1\nb,120\n",
            MosScale((0, 100)),
            r"labels.csv line 3 \(image 'b'\): score = 120.0 is outside the declared range \[0, 100\]",
        ),
        (
            "image,mos\na,nan\n",
            MosScale((0, 100)),
            r"line 2 \(image 'a'\): score = nan is not finite",
        ),
        (
            "image,mos,std\na,1,-2\n",
            MosScale((0, 100)),
            r"line 2 \(image 'a'\): std = -2.0 is negative",
        ),
        (
            "image,mos,std\na,1,inf\n",
            MosScale((0, 100)),
            r"line 2 \(image 'a'\): std = inf is infinite",
        ),
        (
            "image,mos\na,1\n",
            None,
            r"score scale is unknown; give a registered data set \(--dataset\)",
        ),
    ],
)
def test_bad_rows_name_file_line_and_image(tmp_path, text, scale, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_labels(csv(tmp_path, text), scale)


def test_deqa_json_without_scale_uses_its_level_values(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(
            [
                {
                    "image": "a.jpg",
                    "gt_score": 70.0,
                    "gt_score_norm": 3.8,
                    "std": 12.0,
                    "std_norm": 0.48,
                },
                {
                    "image": "b.jpg",
                    "gt_score": 20.0,
                    "gt_score_norm": 1.8,
                    "std": 10.0,
                    "std_norm": 0.4,
                },
            ]
        )
    )
    labels = build_labels(read_labels(path), None)
    np.testing.assert_allclose(labels.mos_norm, [3.8, 1.8])
    np.testing.assert_allclose(labels.probs @ np.arange(1, 6), [3.8, 1.8], atol=1e-12)
    q = labels.quality()
    assert q.valid_fraction == 1.0 and q.mean_abs_std_error < 1e-8


def test_records_carry_raw_and_normalised_values(tmp_path):
    t = csv(tmp_path, "image,mos,std,split,ref_image\na,75,10,train,r.png\nb,25,,test,\n")
    recs = build_labels(t, MosScale((0, 100)), "moment").records(dataset="toy")
    a, b = (r.to_json() for r in recs)
    assert (
        a["mos"] == 75
        and a["std"] == 10
        and a["mos_norm"] == 4.0
        and a["std_norm"] == pytest.approx(0.4)
    )
    assert a["split"] == "train" and a["dataset"] == "toy" and a["extra"] == {"ref_image": "r.png"}
    # b has no std: imputed with the data set's mean std (0.4), flagged, empty extra cells dropped.
    assert (
        b["std"] is None
        and b["std_norm"] == pytest.approx(0.4)
        and b["extra"] == {"std_imputed": True}
    )
    assert np.isclose(np.dot(b["probs"], range(1, 6)), 2.0)


def test_no_std_policies_through_build_labels(tmp_path):
    t = csv(tmp_path, "image,mos\na,62.5\nb,25\n")
    labels = build_labels(t, MosScale((0, 100)), "moment", no_std_policy="binary")
    np.testing.assert_allclose(labels.probs[0], [0, 0, 0.5, 0.5, 0])
    assert all(r.std_norm is None for r in labels.records())
    labels = build_labels(t, MosScale((0, 100)), "moment", default_std=0.3, no_std_policy="dataset_mean_std")
    np.testing.assert_allclose(labels.std_used, [0.3, 0.3])
    # sos (default): 0.3 at mid-scale, less toward the ends (MOS 3.5 and 2 on the level scale)
    labels = build_labels(t, MosScale((0, 100)), "moment", default_std=0.3)
    np.testing.assert_allclose(labels.std_used, 0.3 * np.sqrt(np.array([2.5 * 1.5, 1 * 3]) / 4))
    with pytest.raises(
        ValueError, match=r"line 2 \(image 'a'\): no std given and no_std_policy is 'error'"
    ):
        build_labels(t, MosScale((0, 100)), "moment", no_std_policy="error")


def test_histogram_method_needs_histograms(tmp_path):
    t = csv(tmp_path, "image,mos\na,3\n")
    with pytest.raises(ValueError, match="method 'histogram' needs rating-histogram columns"):
        build_labels(t, MosScale((1, 5)), "histogram")
    t = csv(tmp_path, "image,mos,c1,c2,c3,c4,c5\na,3,0,0,0,0,0\n", "h.csv")
    with pytest.raises(ValueError, match=r"h.csv line 2 \(image 'a'\): rating histogram sums to 0"):
        build_labels(t, MosScale((1, 5)), "histogram")


def test_label_quality_hand_values():
    probs = np.array([[0, 0, 1, 0, 0], [0, 0.5, 0.5, 0, 0], [0, 0.3, 0.3, 0.3, 0.3]])
    q = label_quality(probs, [3.0, 2.4, 3.0], [0.0, 0.5, np.nan])
    # means: 3, 2.5, 4.2 (unnormalised row 3) -> errors 0, 0.1, 1.2
    assert q.mean_abs_mean_error == pytest.approx(
        1.3 / 3
    ) and q.max_abs_mean_error == pytest.approx(1.2)
    # std errors only where std is given: |0 - 0| and |0.5 - 0.5|
    assert q.mean_abs_std_error == pytest.approx(0.0, abs=1e-12)
    assert q.valid_fraction == pytest.approx(2 / 3)
    assert q.histogram_js is None
    q = label_quality(probs[:2], [3.0, 2.5], None, histogram=probs[:2] * 7)  # counts are normalised
    assert (
        q.histogram_js == pytest.approx(0.0, abs=1e-15)
        and q.gaussian_js is None
        and q.mean_abs_std_error is None
    )


def test_koniq_registry_labels_end_to_end():
    spec = get_dataset("koniq")
    labels = build_labels(spec.read_labels(), MosScale.from_dataset(spec))
    q = labels.quality()
    assert q.n == 10073 and q.valid_fraction == 1.0 and q.max_abs_mean_error < 1e-12
    assert q.mean_abs_std_error < 1e-3
