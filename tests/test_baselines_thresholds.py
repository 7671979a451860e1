"""Threshold labels, score distribution (calibrate) and aggregation, against hand-computed values."""

import numpy as np
import pytest

from deqa.baselines.thresholds import ThresholdPolicy, aggregate_scores, score_distribution


def test_default_policy_labels_and_actions():
    p = ThresholdPolicy()
    assert [p.classify(s).label for s in (0.9, 0.75, 0.6, 0.3, 0.29, 0.0)] == ["high", "high", "medium", "low", "rejected", "rejected"]
    assert p.classify(0.1).action == "reject"
    with pytest.raises(ValueError, match="non-finite"):
        p.classify(float("nan"))


def test_policy_round_trip_and_validation():
    d = {"levels": [{"label": "keep", "min_score": 0.4, "action": "publish"}, {"label": "drop", "min_score": 0.0, "action": "delete"}]}
    p = ThresholdPolicy.from_dict(d)
    assert p.to_dict() == d and p.classify(0.4).label == "keep"
    with pytest.raises(ValueError, match="strictly decrease"):
        ThresholdPolicy.from_dict({"levels": [{"label": "a", "min_score": 0.2, "action": "x"}, {"label": "b", "min_score": 0.5, "action": "y"}]})
    with pytest.raises(ValueError, match="min_score 0"):
        ThresholdPolicy.from_dict({"levels": [{"label": "a", "min_score": 0.2, "action": "x"}]})
    with pytest.raises(ValueError, match=r"levels\[0\]"):
        ThresholdPolicy.from_dict({"levels": [{"label": "a", "min": 0.0, "action": "x"}]})
    with pytest.raises(ValueError, match="unknown key"):
        ThresholdPolicy.from_dict({"levels": [], "default": "a"})


def test_score_distribution_by_hand():
    d = score_distribution([0.0, 0.25, 0.5, 0.75, 1.0])
    assert d["count"] == 5 and d["min"] == 0.0 and d["max"] == 1.0 and d["mean"] == 0.5
    assert d["std"] == pytest.approx(np.sqrt(0.125))
    # numpy's linear interpolation: P10 of 5 evenly spaced points = 0.1, P50 = 0.5, P90 = 0.9
    assert d["p10"] == pytest.approx(0.1) and d["p50"] == 0.5 and d["p90"] == pytest.approx(0.9)
    assert [k for k in d if k.startswith("p")] == [f"p{i}" for i in range(10, 100, 10)]
    with pytest.raises(ValueError, match="no scores"):
        score_distribution([])
    with pytest.raises(ValueError, match="NaN"):
        score_distribution([0.1, float("inf")])


def test_aggregations_by_hand():
    s = [0.1, 0.5, 0.6, 0.7, 0.9, 0.2, 0.4, 0.8, 0.3, 10.0]
    assert aggregate_scores(s, "mean") == pytest.approx(1.45)
    assert aggregate_scores(s, "median") == pytest.approx(0.55)
    assert aggregate_scores(s) == aggregate_scores(s, "median")
    assert aggregate_scores(s, "min") == 0.1
    # trim 10% of 10 values = 1 from each end: mean of 0.2..0.9 = 0.55
    assert aggregate_scores(s, "trimmed_mean", trim=0.1) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_scores(s, "max")
    with pytest.raises(ValueError, match="trim"):
        aggregate_scores(s, "trimmed_mean", trim=0.5)
    with pytest.raises(ValueError, match="no scores"):
        aggregate_scores([], "mean")
