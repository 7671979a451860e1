"""Training data: manifests -> samples, weighted mixing of data sets, same-data-set pairs.

A *sample* is one image with its soft label (level order bad..excellent) and its MOS / std on the
level scale. The training set is the concatenation of every manifest's samples; the
:class:`PairSampler` decides, for each epoch and seed, which samples are drawn (data set weights)
and pairs each drawn sample with another one *from the same data set* (the fidelity loss compares
two images rated on the same scale). The sampler yields index tuples, ``(i, j)``, and the dataset
returns ``[sample_i, sample_j]`` for them, so the pairing is fixed by (seed, epoch) alone: it is
the same on every DDP rank, in every DataLoader worker, and after a resume.

The ``datasets`` library is not used here: the samples are a few thousand small records already
validated by :func:`deqa.data.manifest.read_manifest`, images are decoded lazily in DataLoader
workers, and the pair order must come from our sampler, not from a shuffled Arrow table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..imageio import ImageLoadError, load_image

__all__ = [
    "TrainingDataError",
    "QualitySample",
    "load_samples",
    "QualityDataset",
    "PairSampler",
    "build_train_dataset",
    "build_eval_dataset",
    "collate_examples",
]


class TrainingDataError(ValueError):
    """A training or validation example cannot be used (an unreadable image, a prompt longer than
    max_length), found while training; ``str(err)`` names the image. It takes one argument, so a
    DataLoader worker's copy comes back to the main process as this type (with the worker's
    traceback in its text)."""


@dataclass(frozen=True)
class QualitySample:
    """One labelled image. probs: K floats in level order; mos/std on the level scale [1, K]."""

    image: str
    probs: tuple[float, ...]
    mos: float
    std: float
    dataset: str


def _resolve(image: str, root: Path) -> str:
    path = Path(image)
    return str(path if path.is_absolute() else root / path)


def load_samples(
    manifest: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    split: str | None = None,
    label_method: str | None = None,
    max_samples: int | None = None,
    check_images: bool = True,
) -> list[QualitySample]:
    """Read a ``deqa-labels`` manifest into samples.

    image_root: folder that relative image paths resolve against (default: the manifest's
    folder). split: keep only rows with this split (None: all rows). label_method: None keeps the
    manifest's soft labels; a method of :func:`deqa.levels.soft_labels` (e.g. "onehot",
    "gaussian") recomputes them from mos_norm / std_norm. A missing std_norm becomes the mean
    std_norm of the manifest (or ``deqa.levels.DEFAULT_STD``): the fidelity loss needs one.
    Raises FileNotFoundError naming the manifest and the first missing images.
    """
    from ..data.manifest import read_manifest
    from ..levels import DEFAULT_STD, soft_labels

    manifest = Path(manifest)
    records = read_manifest(manifest)
    if not records:
        raise ValueError(f"{manifest} has no rows; write it with deqa-labels")
    if split is not None:
        splits = sorted({str(r.split) for r in records})
        records = [r for r in records if r.split == split]
        if not records:
            raise ValueError(f"{manifest}: no rows with split {split!r} (splits present: {splits})")
    if max_samples is not None:
        records = records[:max_samples]
    root = Path(image_root) if image_root is not None else manifest.parent
    images = [_resolve(r.image, root) for r in records]
    if check_images:
        missing = [p for p in images if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(images)} images of {manifest} are missing under {root} "
                f"(first: {missing[:3]}); set the image root of this manifest (image_roots / eval_image_root)"
            )

    mos = np.array([r.mos_norm for r in records], dtype=np.float64)
    stds = [r.std_norm for r in records]
    known = [s for s in stds if s is not None]
    fill = float(np.mean(known)) if known else DEFAULT_STD
    std = np.array([fill if s is None else s for s in stds], dtype=np.float64)
    if label_method is None:
        probs = np.array([r.probs for r in records], dtype=np.float64)
    else:
        try:
            probs = soft_labels(mos, std, method=label_method)
        except ValueError as err:
            raise ValueError(f"{manifest}: label_method={label_method!r}: {err}") from None
    name = records[0].dataset if records and records[0].dataset else manifest.stem
    return [
        QualitySample(
            image=img,
            probs=tuple(float(p) for p in probs[i]),
            mos=float(mos[i]),
            std=float(std[i]),
            dataset=records[i].dataset or name,
        )
        for i, img in enumerate(images)
    ]


class QualityDataset(Dataset):
    """Samples of one or more data sets; ``ds[i]`` -> [example], ``ds[(i, j)]`` -> [ex_i, ex_j].

    An example is a dict: image (RGB PIL), probs (list), mos, std, dataset, path. ``groups`` holds
    the sample indices of each data set (in ``names`` order) for the pair sampler.
    """

    def __init__(
        self,
        samples: Sequence[QualitySample],
        *,
        groups: Sequence[Sequence[int]] | None = None,
        names: Sequence[str] | None = None,
        weights: Sequence[float] | None = None,
    ):
        self.samples = list(samples)
        self.groups = [list(g) for g in groups] if groups is not None else [list(range(len(self.samples)))]
        self.names = list(names) if names is not None else ["data"] * len(self.groups)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.groups)

    def __len__(self) -> int:
        return len(self.samples)

    def example(self, index: int) -> dict:
        s = self.samples[index]
        try:
            image = load_image(s.image)
        except ImageLoadError as err:  # str(err) names the file and the reason
            raise TrainingDataError(str(err)) from None
        return {
            "image": image,
            "probs": list(s.probs),
            "mos": s.mos,
            "std": s.std,
            "dataset": s.dataset,
            "path": s.image,
        }

    def __getitem__(self, key: int | Sequence[int]) -> list[dict]:
        if isinstance(key, (int, np.integer)):
            return [self.example(int(key))]
        return [self.example(int(k)) for k in key]

    def sampler(self, *, seed: int, pairs: bool = True) -> PairSampler:
        """The epoch sampler of this dataset (see :class:`PairSampler`)."""
        return PairSampler(self.groups, self.weights, seed=seed, pairs=pairs, names=self.names)


class PairSampler(Sampler):
    """Yields ``(anchor, partner)`` index pairs (or ``(anchor,)``), deterministic for (seed, epoch).

    Per epoch, data set g contributes round(weight_g * n_g) anchors: floor(weight_g) full
    permutations of its samples plus a random subset for the fraction (weight 1 = every sample
    once). Each anchor's partner is drawn uniformly from the *other* samples of its data set.
    The anchors of all data sets are then shuffled together. ``set_epoch`` (called by the
    Trainer / accelerate every epoch) changes the draw.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        weights: Sequence[float] | None = None,
        *,
        seed: int = 0,
        pairs: bool = True,
        names: Sequence[str] | None = None,
    ):
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.weights = list(weights) if weights is not None else [1.0] * len(self.groups)
        names = list(names) if names is not None else [f"#{i}" for i in range(len(self.groups))]
        if len(self.weights) != len(self.groups):
            raise ValueError(f"{len(self.weights)} weights for {len(self.groups)} data sets")
        for name, g, w in zip(names, self.groups, self.weights, strict=True):
            if not (math.isfinite(w) and w > 0):
                raise ValueError(f"data set {name}: weight must be finite and > 0, got {w}")
            if len(g) == 0:
                raise ValueError(f"data set {name} has no training samples")
            if pairs and len(g) < 2:
                raise ValueError(
                    f"data set {name} has a single training image: the fidelity loss pairs images "
                    "of the same data set (add images, or set fidelity_weight: 0)"
                )
        self.counts = [int(round(w * len(g))) for g, w in zip(self.groups, self.weights, strict=True)]
        for name, g, w, count in zip(names, self.groups, self.weights, self.counts, strict=True):
            if count == 0:
                raise ValueError(
                    f"data set {name}: weight {w:g} draws round({w:g} x {len(g)} images) = 0 of them an "
                    f"epoch, so it would not be trained on; give it a weight of at least {0.5 / len(g):.3g}"
                )
        self.seed = int(seed)
        self.pairs = pairs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(self.counts)

    def pairs_for_epoch(self, epoch: int) -> np.ndarray:
        """[len(self), 2] (or [len(self), 1]) index array of one epoch."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        chunks = []
        for g, count in zip(self.groups, self.counts, strict=True):
            n = len(g)
            reps, rest = divmod(count, n)
            pos = [rng.permutation(n) for _ in range(reps)]
            if rest:
                pos.append(rng.choice(n, size=rest, replace=False))
            anchor_pos = np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64)
            if self.pairs:
                # a uniform *other* position: shift by 1..n-1 (mod n)
                partner_pos = (anchor_pos + rng.integers(1, n, size=len(anchor_pos))) % n
                chunks.append(np.stack([g[anchor_pos], g[partner_pos]], axis=1))
            else:
                chunks.append(g[anchor_pos][:, None])
        out = np.concatenate(chunks, axis=0)
        return out[rng.permutation(len(out))]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        for row in self.pairs_for_epoch(self.epoch):
            yield tuple(int(i) for i in row)


def build_train_dataset(
    manifests: Sequence[str],
    *,
    image_roots: Sequence[str | None] | None = None,
    weights: Sequence[float] | None = None,
    split: str | None = "train",
    label_method: str | None = None,
) -> QualityDataset:
    """Concatenate the samples of several manifests; one pairing group per data set of each
    manifest (a row's ``dataset``: a manifest that mixes data sets pairs each image only with
    images of its own, whose MOS is on the same scale), each with its manifest's weight."""
    roots = list(image_roots) if image_roots is not None else [None] * len(manifests)
    if len(roots) == 1 and len(manifests) > 1:
        roots = roots * len(manifests)
    per_manifest = list(weights) if weights is not None else [1.0] * len(manifests)
    samples: list[QualitySample] = []
    groups: list[list[int]] = []
    names: list[str] = []
    group_weights: list[float] = []
    for manifest, root, weight in zip(manifests, roots, per_manifest, strict=True):
        part = load_samples(manifest, image_root=root, split=split, label_method=label_method)
        by_dataset: dict[str | None, list[int]] = {}
        for i, sample in enumerate(part):
            by_dataset.setdefault(sample.dataset, []).append(len(samples) + i)
        for dataset, members in by_dataset.items():
            groups.append(members)
            names.append(f"{dataset} ({manifest})")
            group_weights.append(weight)
        samples.extend(part)
    return QualityDataset(samples, groups=groups, names=names, weights=group_weights)


def build_eval_dataset(
    manifest: str,
    *,
    image_root: str | None = None,
    split: str | None = "test",
    max_samples: int | None = None,
    label_method: str | None = None,
) -> QualityDataset:
    """The validation set: one example per item, in manifest order. ``label_method``: the
    training's, so that the validation KL / CE (and eval_loss) measure what training minimises."""
    return QualityDataset(
        load_samples(manifest, image_root=image_root, split=split, max_samples=max_samples, label_method=label_method)
    )


def collate_examples(items: Sequence[Sequence[dict]]) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Flatten dataset items into one list of examples plus the pair index tensors.

    items: B lists of 1 or 2 examples. Returns (examples, pair_a [P], pair_b [P]): the first
    examples of all items come first, then the partners, so pair p is (pair_a[p], pair_b[p]).
    """
    firsts = [item[0] for item in items]
    partners = [item[1] for item in items if len(item) > 1]
    if partners and len(partners) != len(items):
        raise ValueError("a batch mixes paired and single items")
    examples = firsts + partners
    n = len(partners)
    pair_a = torch.arange(n, dtype=torch.long)
    return examples, pair_a, pair_a + len(firsts)
