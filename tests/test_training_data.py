"""Training data: manifests -> samples, weighted mixing, same-data-set pairs, determinism."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from deqa.data.manifest import ManifestRecord, write_manifest
from deqa.training.data import (
    PairSampler,
    QualityDataset,
    build_eval_dataset,
    build_train_dataset,
    collate_examples,
    load_samples,
)


def _manifest(folder, name, n, *, split="train", std=0.5, dataset=None):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20 % 256, 0, 0)).save(folder / f"{name}{i}.png")
        mos = 1.0 + 4.0 * i / max(n - 1, 1)
        probs = np.zeros(5)
        probs[int(round(mos)) - 1] = 1.0
        records.append(
            ManifestRecord(
                image=f"{name}{i}.png", mos=mos * 20, std=None if std is None else std * 20, mos_norm=mos,
                std_norm=std, probs=probs.tolist(), split=split if i % 4 else "test", dataset=dataset or name,
            )
        )
    path = folder / f"{name}.jsonl"
    write_manifest(path, records)
    return path


def test_load_samples_resolves_roots_splits_and_labels(tmp_path):
    path = _manifest(tmp_path / "a", "a", 8)
    samples = load_samples(path, split="train")
    assert len(samples) == 6  # rows 0 and 4 are "test"
    assert all(s.image.startswith(str(tmp_path / "a")) for s in samples)
    assert samples[0].mos == pytest.approx(1 + 4 / 7) and samples[0].std == 0.5
    assert samples[0].dataset == "a"
    # recomputed labels: one-hot at the nearest level (Q-Align bins), gaussian sums to 1
    onehot = load_samples(path, split=None, label_method="onehot")
    assert all(sorted(s.probs)[-1] == 1.0 for s in onehot)
    gauss = load_samples(path, split=None, label_method="gaussian")
    assert all(abs(sum(s.probs) - 1) < 1e-9 for s in gauss)
    # a separate image root
    moved = tmp_path / "images"
    (tmp_path / "a").rename(moved)
    assert len(load_samples(moved / "a.jsonl", image_root=moved, split=None)) == 8


def test_missing_std_is_filled_with_the_mean_std(tmp_path):
    path = _manifest(tmp_path, "nostd", 4, std=None)
    from deqa.levels import DEFAULT_STD

    assert {s.std for s in load_samples(path, split=None)} == {DEFAULT_STD}


def test_load_samples_errors_name_the_file(tmp_path):
    path = _manifest(tmp_path, "m", 4)
    with pytest.raises(ValueError, match=r"no rows with split 'val' \(splits present: \['test', 'train'\]\)"):
        load_samples(path, split="val")
    (tmp_path / "m1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 images of .*m.jsonl are missing.*image_roots"):
        load_samples(path, split="train")
    with pytest.raises(ValueError, match="label_method='nope'"):
        load_samples(path, split="test", label_method="nope")


def test_pair_sampler_pairs_within_a_data_set_and_is_deterministic():
    groups = [list(range(0, 10)), list(range(10, 14))]
    s = PairSampler(groups, [1.0, 2.0], seed=3)
    assert len(s) == 10 + 8
    pairs = list(s)
    assert len(pairs) == 18
    for a, b in pairs:
        assert a != b
        assert (a < 10) == (b < 10), "a pair mixes data sets"
    # weights: group 0 once per epoch (every sample exactly once), group 1 twice
    anchors = Counter(a for a, _ in pairs)
    assert all(anchors[i] == 1 for i in range(10)) and all(anchors[i] == 2 for i in range(10, 14))
    # same seed + epoch -> same pairs (another instance, e.g. another DDP rank); other epoch differs
    assert list(PairSampler(groups, [1.0, 2.0], seed=3)) == pairs
    s.set_epoch(1)
    assert list(s) != pairs
    assert list(PairSampler(groups, [1.0, 2.0], seed=4)) != pairs


def test_pair_sampler_fractional_weights_and_singles():
    s = PairSampler([list(range(8))], [0.5], seed=0, pairs=False)
    rows = list(s)
    assert len(rows) == 4 and all(len(r) == 1 for r in rows) and len(set(rows)) == 4


@pytest.mark.parametrize(
    "groups, weights, match",
    [
        ([[0]], None, "single training image"),
        ([[]], None, "no training samples"),
        ([[0, 1]], [0.0], "weight must be finite and > 0"),
        ([[0, 1]], [1.0, 1.0], "2 weights for 1 data sets"),
        # round(0.2 x 2) = 0: the data set would silently not be trained on
        ([[0, 1]], [0.2], r"data set #0: weight 0.2 draws round\(0.2 x 2 images\) = 0 .*at least 0.25"),
    ],
)
def test_pair_sampler_errors(groups, weights, match):
    with pytest.raises(ValueError, match=match):
        PairSampler(groups, weights)


def test_train_dataset_mixes_manifests_and_returns_pairs(tmp_path):
    a = _manifest(tmp_path / "a", "a", 8)
    b = _manifest(tmp_path / "b", "b", 8)
    ds = build_train_dataset([str(a), str(b)], weights=[1.0, 0.5])
    assert len(ds) == 12 and [len(g) for g in ds.groups] == [6, 6]
    sampler = ds.sampler(seed=0)
    assert len(sampler) == 6 + 3
    pair = next(iter(sampler))
    items = ds[pair]
    assert len(items) == 2 and items[0]["dataset"] == items[1]["dataset"]
    assert items[0]["image"].mode == "RGB" and len(items[0]["probs"]) == 5
    single = ds[0]
    assert len(single) == 1


def test_a_manifest_mixing_data_sets_pairs_within_each(tmp_path):
    """MOS of two data sets are on different scales: a pair (the fidelity loss's unit) never spans
    them, also when one manifest holds both (a row's "dataset")."""
    from deqa.data.manifest import read_manifest

    a = _manifest(tmp_path / "mix", "a", 8, dataset="koniq10k")
    b = _manifest(tmp_path / "mix", "b", 8, dataset="kadid10k")
    mixed = tmp_path / "mix" / "both.jsonl"
    write_manifest(mixed, read_manifest(a) + read_manifest(b))
    ds = build_train_dataset([str(mixed)], weights=[0.5])
    assert [len(g) for g in ds.groups] == [6, 6] and ds.weights == [0.5, 0.5]
    assert [n.split(" ")[0] for n in ds.names] == ["koniq10k", "kadid10k"]
    for pair in ds.sampler(seed=0):
        assert len({ds.samples[i].dataset for i in pair}) == 1


def test_eval_dataset_and_collate_examples(tmp_path):
    path = _manifest(tmp_path, "e", 8)
    ev = build_eval_dataset(str(path), split="test", max_samples=1)
    assert len(ev) == 1
    # the training's label method relabels validation too (eval_loss is the training objective)
    gauss = build_eval_dataset(str(path), split="test", label_method="gaussian")
    assert [s.probs for s in gauss.samples] == [s.probs for s in load_samples(path, split="test", label_method="gaussian")]
    assert [s.probs for s in gauss.samples] != [s.probs for s in build_eval_dataset(str(path), split="test").samples]
    ds = QualityDataset(load_samples(path, split=None))
    examples, pa, pb = collate_examples([ds[(0, 1)], ds[(2, 3)]])
    assert [e["path"][-6:] for e in examples] == ["e0.png", "e2.png", "e1.png", "e3.png"]
    assert pa.tolist() == [0, 1] and pb.tolist() == [2, 3]
    examples, pa, pb = collate_examples([ds[0], ds[1]])
    assert len(examples) == 2 and pa.numel() == 0 and pb.dtype == torch.long
    with pytest.raises(ValueError, match="mixes paired and single"):
        collate_examples([ds[(0, 1)], ds[2]])
