"""The data set registry: every packaged label file parses with the expected rows and scale."""

import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from deqa.data.registry import (
    REGISTRY_PATH,
    DatasetSpec,
    UnknownDatasetError,
    get_dataset,
    list_datasets,
    load_registry,
)
from deqa.levels import DEFAULT_MID_STD, DEFAULT_STD, LEVEL_VALUES, impute_std, rescale_mos

# Row counts of the label files (table in the data README that came with them).
EXPECTED_ROWS = {
    "koniq10k": 10073,
    "spaq": 11125,
    "kadid10k": 10125,
    "livec": 1169,
    "tid2013": 3000,
    "csiq": 866,
    "pipal": 23200,
    "live": 779,
    "agiqa3k": 2982,
}


@pytest.fixture(scope="module")
def tables():
    return {name: get_dataset(name).read_labels() for name in list_datasets()}


def test_all_nine_data_sets_are_registered():
    assert sorted(list_datasets()) == sorted(EXPECTED_ROWS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_label_file_parses_with_expected_rows_and_range(name, tables):
    spec = get_dataset(name)
    table = tables[name]
    assert spec.label_path.is_file()
    assert len(table) == spec.num_rows == EXPECTED_ROWS[name]
    assert len(set(table.images)) == len(table), "image names must be unique"
    lo, hi = spec.mos_range
    assert np.isfinite(table.mos).all()
    assert table.mos.min() >= lo and table.mos.max() <= hi
    # The declared range is a real scale, not a loose bound: scores use a good part of it.
    assert table.mos.max() - table.mos.min() >= 0.4 * (hi - lo)
    if spec.has_std:
        assert table.std is not None and np.isfinite(table.std).all() and (table.std >= 0).all()
    else:
        assert table.std is None
    assert set(table.split) <= {"train", "test", "none"}
    # Rescaling the whole file works (no row outside the declared scale).
    m, _ = rescale_mos(
        table.mos,
        table.std,
        mos_range=spec.mos_range,
        lower_better=spec.lower_better,
        std_range=spec.std_range,
    )
    assert m.min() >= 1.0 and m.max() <= 5.0


def test_published_split_sizes(tables):
    def count(name, split):
        return sum(s == split for s in tables[name].split)

    assert (count("koniq10k", "train"), count("koniq10k", "test")) == (7046, 2010)
    assert (count("spaq", "train"), count("spaq", "test")) == (8897, 2224)
    assert (count("kadid10k", "train"), count("kadid10k", "test")) == (8106, 2000)
    # LIVE Challenge: the 1,162 test images of every published result; the release's 7 training
    # images (Images/trainingImages/) are kept, as train.
    assert (count("livec", "train"), count("livec", "test")) == (7, 1162)
    assert sorted(i for i, s in zip(tables["livec"].images, tables["livec"].split, strict=True) if s == "train") == [
        f"trainingImages/t{k}.bmp" for k in range(1, 8)]


def test_direction_and_observed_range_choices(tables):
    assert get_dataset("csiq").lower_better and get_dataset("live").lower_better
    assert not any(
        get_dataset(n).lower_better
        for n in ("koniq10k", "spaq", "kadid10k", "livec", "tid2013", "pipal", "agiqa3k")
    )
    # PIPAL's Elo has no fixed scale: the registry uses the observed min/max of the file.
    pipal = tables["pipal"]
    assert get_dataset("pipal").mos_range == (pipal.mos.min(), pipal.mos.max())
    assert get_dataset("tid2013").mos_range == (0.0, 9.0)


def test_koniq_facts_stated_in_the_registry_notes(tables):
    t = tables["koniq10k"]
    counts = t.histogram * np.asarray(t.extra["n_ratings"], dtype=float)[:, None]
    ratings_mean = t.histogram @ LEVEL_VALUES
    # std is the sample std (ddof=1) of the 1-5 ratings -> std_range [1, 5].
    n = counts.sum(1)
    var = (counts * (LEVEL_VALUES - ratings_mean[:, None]) ** 2).sum(1) / (n - 1)
    np.testing.assert_allclose(np.sqrt(var), t.std, atol=1e-9)
    assert get_dataset("koniq10k").std_range == (1.0, 5.0)
    # The 0-100 MOS is not exactly linear in the 1-5 rating mean.
    gap = np.abs(1 + t.mos / 25 - ratings_mean)
    assert round(gap.mean(), 2) == 0.19 and round(gap.max(), 2) == 0.48


def test_tid2013_std_facts_stated_in_the_notes(tables):
    std = tables["tid2013"].std
    assert round(std.max(), 2) == 0.30 and (std == 0).sum() == 2
    assert round(std.max() * 4 / 9, 2) == 0.13


def test_default_std_is_the_average_rating_spread(tables):
    # DEFAULT_STD (deqa.levels) is justified by these mean stds on the 1-5 scale.
    means = {}
    for name in ("koniq10k", "kadid10k", "livec"):
        spec = get_dataset(name)
        _, s = rescale_mos(
            tables[name].mos, tables[name].std, mos_range=spec.mos_range, std_range=spec.std_range
        )
        means[name] = s.mean()
    assert [round(means[n], 2) for n in ("koniq10k", "kadid10k", "livec")] == [0.57, 0.75, 0.77]
    assert abs(np.mean(list(means.values())) - DEFAULT_STD) < 0.01


def test_default_mid_std_is_the_average_sos_fit(tables):
    # DEFAULT_MID_STD (deqa.levels, the 'sos' no-std policy) and the errors quoted beside it: the
    # SOS fit std^2 = a (m - 1)(5 - m) on each data set's own stds, and how well it predicts them.
    mids, errors = {}, {}
    for name in ("koniq10k", "kadid10k", "livec"):
        spec = get_dataset(name)
        m, s = rescale_mos(tables[name].mos, tables[name].std, mos_range=spec.mos_range, std_range=spec.std_range)
        mids[name] = float(np.sqrt(4 * (s**2).mean() / ((m - 1) * (5 - m)).mean()))
        # every std hidden: the policy's fill from the MOS alone, with that data set's mid-scale std
        sos, _ = impute_std(np.full_like(s, np.nan), "sos", default_std=mids[name], mos=m)
        errors[name] = (np.abs(s - sos).mean(), np.abs(s - s.mean()).mean())
    assert [round(mids[n], 2) for n in ("koniq10k", "kadid10k", "livec")] == [0.62, 0.93, 0.86]
    assert abs(np.mean(list(mids.values())) - DEFAULT_MID_STD) < 0.01
    assert [tuple(round(e, 3) for e in errors[n]) for n in ("koniq10k", "kadid10k", "livec")] == [
        (0.050, 0.051), (0.097, 0.160), (0.053, 0.087)]


@pytest.mark.parametrize(
    "alias, name",
    [
        ("koniq", "koniq10k"),
        ("KonIQ-10k", "koniq10k"),
        ("KADID_10k", "kadid10k"),
        ("live-c", "livec"),
        ("CLIVE", "livec"),
        ("LIVE", "live"),
        ("tid", "tid2013"),
        ("agiqa-3k", "agiqa3k"),
        ("pipal", "pipal"),
    ],
)
def test_aliases(alias, name):
    assert get_dataset(alias).name == name


def test_unknown_data_set_lists_known_names():
    with pytest.raises(
        UnknownDatasetError,
        match=r"unknown data set 'konik'.*koniq10k \(koniq, koniq-10k\).*agiqa3k",
    ):
        get_dataset("konik")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


GOOD = """
mine:
  title: Mine
  labels: /abs/labels.csv
  image_column: image
  score_column: mos
  mos_range: [0, 10]
"""


def test_load_registry_custom_file(tmp_path):
    specs = load_registry(_write(tmp_path, GOOD))
    spec = specs["mine"]
    assert (
        isinstance(spec, DatasetSpec)
        and spec.mos_range == (0.0, 10.0)
        and spec.label_path == Path("/abs/labels.csv")
    )
    assert load_registry() == load_registry(REGISTRY_PATH)


def test_label_path_expands_the_home_folder(tmp_path, monkeypatch):
    """``labels: ~/x.csv`` is in the home folder, not in deqa/data/~/."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = load_registry(_write(tmp_path, GOOD.replace("/abs/labels.csv", "~/x.csv")))["mine"]
    assert spec.label_path == tmp_path / "home" / "x.csv"


def test_extra_registry_labels_home_relative_and_absolute(tmp_path, monkeypatch):
    """--registry: relative label paths are relative to the YAML, ``~`` is the home folder."""
    from deqa.evaluation.datasets import load_extra_registry

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = GOOD + GOOD.replace("mine", "home").replace("/abs/labels.csv", "~/x.csv")
    text += GOOD.replace("mine", "rel").replace("/abs/labels.csv", "sub/y.csv")
    (tmp_path / "reg").mkdir()
    specs = load_extra_registry(_write(tmp_path / "reg", text))
    assert specs["home"].labels == str(tmp_path / "home" / "x.csv")
    assert specs["home"].label_path == tmp_path / "home" / "x.csv"
    assert specs["rel"].label_path == tmp_path / "reg" / "sub" / "y.csv"
    assert specs["mine"].label_path == Path("/abs/labels.csv")


@pytest.mark.parametrize(
    "extra, pattern",
    [
        ("  image_root: /data\n", r"'mine' has unknown key\(s\) \['image_root'\]"),
        ("  std_range: [1, 5]\n", "std_range given but std_column is null"),
        (
            "  aliases: [koniq]\nother:\n  title: O\n  labels: x\n  image_column: i\n  score_column: s\n  mos_range: [0, 1]\n  aliases: [KONIQ]\n",
            "alias 'KONIQ' of 'other' already used by 'mine'",
        ),
    ],
)
def test_registry_errors_name_the_entry_and_key(tmp_path, extra, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_registry(_write(tmp_path, GOOD + extra))


def test_registry_missing_key_and_bad_range(tmp_path):
    with pytest.raises(ValueError, match=r"'mine' is missing key\(s\) \['score_column'\]"):
        load_registry(_write(tmp_path, GOOD.replace("  score_column: mos\n", "")))
    with pytest.raises(ValueError, match="mos_range must have lo < hi"):
        load_registry(_write(tmp_path, GOOD.replace("[0, 10]", "[10, 0]")))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_label_files_are_declared_package_data():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["deqa"]
    package = root / "deqa"
    for name in list_datasets():
        rel = get_dataset(name).label_path.relative_to(package).as_posix()
        assert any(fnmatch(rel, pat) for pat in patterns), rel
    assert any(fnmatch(REGISTRY_PATH.relative_to(package).as_posix(), pat) for pat in patterns)


def test_imputed_stds_give_one_peaked_labels_on_every_data_set_without_std(tables):
    # The README's numbers: a constant std (the old default) made these labels two-peaked; the
    # SOS fill (the default) makes none. KADID's 7 come from its own published stds, untouched.
    from deqa.data.labeling import MosScale, build_labels

    def two_peaked(p):
        left, right = np.maximum.accumulate(p, 1), np.maximum.accumulate(p[:, ::-1], 1)[:, ::-1]
        return int((np.minimum(left, right) - p > 1e-9).any(1).sum())

    counts = {}
    for name in ("spaq", "kadid10k", "csiq", "pipal", "agiqa3k"):
        spec = get_dataset(name)
        scale = MosScale.from_dataset(spec)
        constant = build_labels(tables[name], scale, "moment", no_std_policy="dataset_mean_std")
        sos = build_labels(tables[name], scale, "moment")
        counts[name] = (two_peaked(constant.probs), two_peaked(sos.probs))
    assert counts == {"spaq": (35, 0), "kadid10k": (7, 7), "csiq": (162, 0), "pipal": (24, 0), "agiqa3k": (32, 0)}
