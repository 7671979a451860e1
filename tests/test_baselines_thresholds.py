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
    # On the 0-1 scale: a 1-5 score (every image would get the last label) or NaN is an error.
    for bad in (4.0, float("nan"), -0.1):
        with pytest.raises(ValueError, match="min_score is on the 0-1 scale"):
            ThresholdPolicy.from_dict({"levels": [{"label": "a", "min_score": bad, "action": "x"},
                                                  {"label": "b", "min_score": 0.0, "action": "y"}]})


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


def test_head_limits_send_one_ruined_aspect_to_the_last_level():
    p = ThresholdPolicy.from_dict({"head_limits": {"blur": 0.6, "exposure": 0.6}})
    ok = {"blur": 0.1, "exposure": 0.59, "noise": 0.9}  # noise is not limited
    assert p.classify(0.9, ok).label == "high"
    assert p.classify(0.9, {**ok, "blur": 0.6}).label == "rejected"  # the limit itself is reached
    assert p.classify(0.9, {**ok, "exposure": 0.95}).action == "reject"
    assert ThresholdPolicy.from_dict(p.to_dict()) == p and p.to_dict()["head_limits"] == {"blur": 0.6, "exposure": 0.6}
    assert "head_limits" not in ThresholdPolicy().to_dict()  # saved policies without limits are unchanged
    with pytest.raises(ValueError, match="no intensity for"):
        p.classify(0.9, None)  # a model that reports no intensities cannot be checked
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        ThresholdPolicy.from_dict({"head_limits": {"blur": 1.5}})
    with pytest.raises(ValueError, match="head_limits"):
        ThresholdPolicy.from_dict({"head_limits": [0.5]})
    with pytest.raises(ValueError, match=r"names \['grain'\], which m does not report"):
        ThresholdPolicy.from_dict({"head_limits": {"grain": 0.5}}).check_heads(("blur", "noise"), "m")
    with pytest.raises(ValueError, match="reports no per-degradation intensities"):
        p.check_heads(None, "an encoder head")


def test_head_score_with_head_limits_rejects_a_black_frame(tmp_path, capsys):
    from PIL import Image

    from deqa.cli.baseline import main

    Image.new("RGB", (320, 240)).save(tmp_path / "black.png")
    limits = '{"head_limits": {"exposure": 0.6}}'
    assert main(["head-score", str(tmp_path / "black.png")]) == 0
    plain = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert plain[4] == "high"  # the overall score alone passes it: exposure weighs 0.14 of the score
    assert main(["head-score", str(tmp_path / "black.png"), "--thresholds", limits]) == 0
    gated = capsys.readouterr().out.strip().splitlines()[-1].split("\t")
    assert gated[2] == plain[2] and gated[4:] == ["rejected", "reject"]
    # Per folder too: the folder's exposure (its aggregate) is over the limit.
    assert main(["head-score", str(tmp_path), "--aggregate", "median", "--thresholds", limits]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split("\t")[3] == "rejected"
    assert main(["head-score", str(tmp_path / "black.png"), "--thresholds", '{"head_limits": {"grain": 0.5}}']) == 1
    assert "which the built-in model does not report" in capsys.readouterr().err
