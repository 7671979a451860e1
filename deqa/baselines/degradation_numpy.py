"""The degradation CNN's inference in numpy: the built-in model scores without importing torch.

Why: ``import torch`` alone takes 2-4 s on a 2-core CPU (it loads the whole CUDA-capable
library), longer than the cold-start goal of the built-in model (< 3 s for
``deqa-score photo.jpg``). The network is small (conv / batch-norm / ReLU / max-pool / linear
layers, ~0.28 GMAC at 224 px), so the forward pass is written here once more with numpy's BLAS
matmul, from the same safetensors file. Training, evaluation and GPU scoring keep the torch
module (:class:`~deqa.baselines.degradation.DegradationNet`); the tests hold the two to the same
outputs (float32 rounding apart) for every configuration the torch module accepts.

Layout is NHWC throughout. Batch norm is folded into the preceding conv (eval mode: the running
statistics, which is what the torch scorer always uses); dropout is the identity at inference.
A batch is split over threads by :func:`~deqa.baselines.numpy_parallel.map_batch`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..results import ScoreResult
from ..scorer import Scorer
from .degradation_config import (
    BRANCH_WEIGHTS_NAME,
    WEIGHTS_NAME,
    DegradationModelConfig,
    DetailViews,
    EncoderBranchConfig,
    ResizeToArray,
    WindowedBatch,
    degradation_results,
    mix_logits,
)
from .effnet_numpy import NumpyEffNetTrunk
from .numpy_parallel import CHUNK, map_batch, num_threads

__all__ = [
    "NumpyDegradationNet",
    "NumpyEncoderBranch",
    "NumpyBranchedDegradationNet",
    "NumpyDegradationScorer",
    "load_numpy_degradation_model",
]

_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which DegradationNet uses


def _fold_bn(weight: np.ndarray, bn: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """conv weight [O, I, kh, kw] + BN tensors -> matmul weight [kh*kw*I, O] and bias [O].

    The row order (kh, kw, I) matches the patches of :func:`_conv3x3` and :func:`_patchify`.
    """
    scale = bn["weight"] / np.sqrt(bn["running_var"] + _BN_EPS)
    bias = bn["bias"] - bn["running_mean"] * scale
    w = weight * scale[:, None, None, None]
    o, i, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(kh * kw * i, o), dtype=np.float32), bias.astype(np.float32)


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 conv, stride 1, zero padding 1, on NHWC ``x`` as one im2col matmul."""
    n, h, wd, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # [N, H, W, C, 3, 3] view -> [N, H, W, 3, 3, C] copy: rows in (kh, kw, C) order as in _fold_bn.
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * h * wd, 9 * c)
    return (cols @ w + b).reshape(n, h, wd, -1)


def _patchify(x: np.ndarray, w: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Non-overlapping k x k conv with stride k (no padding; a ragged edge is dropped, as torch does)."""
    n, h, wd, c = x.shape
    ho, wo = h // k, wd // k
    x = x[:, : ho * k, : wo * k]
    cols = x.reshape(n, ho, k, wo, k, c).transpose(0, 1, 3, 2, 4, 5).reshape(n * ho * wo, k * k * c)
    return (cols @ w + b).reshape(n, ho, wo, -1)


def _maxpool2(x: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2, floor mode (an odd last row/column is dropped, as in torch)."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a large negative logit overflows to inf in float32; 1 / (1 + inf) is still the right 0.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


class NumpyDegradationNet:
    """Forward pass of :class:`~deqa.baselines.degradation.DegradationNet` on numpy arrays.

    Built from the same config dict (``deqa_baseline.json``'s ``"model"``) and state dict
    (safetensors) as the torch module; raises ``ValueError`` naming the first tensor that is
    missing or has the wrong shape.
    """

    def __init__(self, model_cfg: dict[str, Any], state: dict[str, np.ndarray], *, source: str = "weights"):
        # The config's validation (heads, weights, stem stride, sizes) is the one both runtimes share.
        self.cfg = cfg = DegradationModelConfig.from_dict(model_cfg)
        self.source = source
        self._state = state
        self._used: set[str] = set()
        chans = (3, *cfg.widths)
        self.stages = []
        for i in range(len(cfg.widths)):
            k = cfg.stem_stride if i == 0 else 1
            stem = self._get(f"stages.{i}.0.weight", (chans[i + 1], chans[i], *((k, k) if k > 1 else (3, 3))))
            blk = f"stages.{i}.3"
            c = chans[i + 1]
            self.stages.append((
                k,
                _fold_bn(stem, self._bn(f"stages.{i}.1", c)),
                _fold_bn(self._get(f"{blk}.conv1.weight", (c, c, 3, 3)), self._bn(f"{blk}.bn1", c)),
                _fold_bn(self._get(f"{blk}.conv2.weight", (c, c, 3, 3)), self._bn(f"{blk}.bn2", c)),
            ))
        feat = cfg.widths[-1]
        self.se = (self._linear("se.fc.0", feat, cfg.se_hidden), self._linear("se.fc.2", cfg.se_hidden, feat))
        self.heads = []
        for name in cfg.heads:
            dims = (feat, *cfg.head_hidden, 1)
            # nn.Sequential indices: Linear, ReLU, Dropout per hidden layer, then the last Linear.
            self.heads.append([self._linear(f"heads.{name}.{3 * j}", dims[j], dims[j + 1]) for j in range(len(dims) - 1)])
        self.mean = self._get("pixel_mean", (1, 3, 1, 1)).reshape(3).astype(np.float32)
        self.std = self._get("pixel_std", (1, 3, 1, 1)).reshape(3).astype(np.float32)
        self.head_weights = self._get("head_weights", (len(cfg.heads),)).astype(np.float32)
        # Strict, as the torch loader is: a tensor this config does not use means the file belongs
        # to another config (BN's step counters are bookkeeping, not weights).
        unexpected = sorted(k for k in state if k not in self._used and not k.endswith("num_batches_tracked"))
        if unexpected:
            raise ValueError(f"{source}: weights do not match the config: unexpected tensors {unexpected[:5]}")
        del self._state, self._used

    def _get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self._state:
            raise ValueError(f"{self.source}: weights do not match the config: tensor {key!r} missing")
        arr = self._state[key]
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"{self.source}: weights do not match the config: tensor {key!r} has shape "
                             f"{tuple(arr.shape)}, the config needs {tuple(shape)}")
        self._used.add(key)
        return arr.astype(np.float32, copy=False)

    def _bn(self, prefix: str, c: int) -> dict[str, np.ndarray]:
        return {p: self._get(f"{prefix}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")}

    def _linear(self, prefix: str, din: int, dout: int) -> tuple[np.ndarray, np.ndarray]:
        w = self._get(f"{prefix}.weight", (dout, din))
        return np.ascontiguousarray(w.T), self._get(f"{prefix}.bias", (dout,))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """images [B, H, W, 3] uint8 (or float in [0, 1]) -> per-head logits [B, n_heads]."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images of shape [B, H, W, 3], got {images.shape}")
        return map_batch(self._logits, images)

    def _logits(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)
        if images.dtype == np.uint8:
            x /= 255.0
        x = (x - self.mean) / self.std
        for k, stem, conv1, conv2 in self.stages:
            x = _relu(_patchify(x, *stem, k) if k > 1 else _conv3x3(x, *stem))
            y = _relu(_conv3x3(x, *conv1))
            x = _relu(x + _conv3x3(y, *conv2))
            x = _maxpool2(x)
        f = x.mean(axis=(1, 2))
        (w1, b1), (w2, b2) = self.se
        f = f * _sigmoid(_relu(f @ w1 + b1) @ w2 + b2)
        return np.concatenate([_mlp(layers, f) for layers in self.heads], axis=1)

    def intensities(self, images: np.ndarray) -> np.ndarray:
        """Per-head degradation intensity in [0, 1]: [B, n_heads]."""
        return _sigmoid(self.logits(images))

    def overall(self, intensities: np.ndarray) -> np.ndarray:
        """1 - weighted sum of intensities, in [0, 1] (1 = clean)."""
        # A row-wise sum, not a matmul: BLAS rounded a row differently alone than beside other
        # rows, and this runs over the whole batch (outside map_batch).
        return np.clip(1.0 - (intensities * self.head_weights).sum(axis=1), 0.0, 1.0)


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], h: np.ndarray) -> np.ndarray:
    """Linear layers with ReLU between them (dropout is the identity at inference)."""
    for j, (w, b) in enumerate(layers):
        h = h @ w + b
        if j < len(layers) - 1:
            h = _relu(h)
    return h


class NumpyEncoderBranch:
    """Forward pass of :class:`~deqa.baselines.encoder_branch.EncoderBranch` on numpy arrays.

    ``state``: ``branch.safetensors`` as numpy arrays (``trunk.*`` in float16 is upcast to
    float32); strict like the CNN: a missing, wrong-shaped or unused tensor is an error naming it.
    """

    def __init__(self, cfg: EncoderBranchConfig, n_heads: int, state: dict[str, np.ndarray], *, source: str = "weights"):
        self.cfg = cfg
        trunk_state = {k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")}
        self.trunk = NumpyEffNetTrunk(trunk_state, cfg.strides, cfg.taps, source=source)
        used = {f"trunk.{k}" for k in self.trunk.used}
        mean = state.get("feat_mean")
        if mean is None or state.get("feat_std") is None:
            raise ValueError(f"{source}: encoder branch tensors 'feat_mean' / 'feat_std' missing")
        dim = mean.shape[0]
        self.feat_mean = mean.astype(np.float32)
        self.feat_std = state["feat_std"].astype(np.float32)
        used |= {"feat_mean", "feat_std"}
        dims = (dim, *cfg.head_hidden, n_heads)
        self.head = []
        for j in range(len(dims) - 1):
            key = f"head.{3 * j}"  # nn.Sequential indices: Linear, ReLU, Dropout per hidden layer
            w, b = state.get(f"{key}.weight"), state.get(f"{key}.bias")
            if w is None or b is None or w.shape != (dims[j + 1], dims[j]) or b.shape != (dims[j + 1],):
                raise ValueError(f"{source}: encoder branch tensor {key}.weight/bias missing or not of shape "
                                 f"({dims[j + 1]}, {dims[j]}) / ({dims[j + 1]},)")
            self.head.append((np.ascontiguousarray(w.T.astype(np.float32)), b.astype(np.float32)))
            used |= {f"{key}.weight", f"{key}.bias"}
        unexpected = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
        if unexpected:
            raise ValueError(f"{source}: encoder branch weights do not match the config: unexpected tensors {unexpected[:5]}")

    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] (or float in [0, 1]) -> pooled trunk features [B, dim]."""
        x = images.astype(np.float32)
        if images.dtype == np.uint8:
            x /= 255.0
        feats = self.trunk.features((x - 0.5) / 0.5)
        if feats.shape[1] != self.feat_mean.shape[0]:
            raise ValueError(f"encoder branch: the trunk gives {feats.shape[1]} features, the head reads {self.feat_mean.shape[0]}")
        return feats

    def logits(self, images: np.ndarray) -> np.ndarray:
        return _mlp(self.head, (self.features(images) - self.feat_mean) / self.feat_std)


class NumpyBranchedDegradationNet:
    """CNN + encoder branch blended per head, as :class:`~deqa.baselines.encoder_branch.BranchedDegradationNet`."""

    def __init__(self, cnn: NumpyDegradationNet, branch: NumpyEncoderBranch):
        self.cnn = cnn
        self.branch = branch
        self.cfg = cnn.cfg
        self.mix = branch.cfg.mix_vector(cnn.cfg.heads)

    def logits(self, images: np.ndarray) -> np.ndarray:
        # One split for both networks: each thread runs the CNN and the trunk on its share.
        return map_batch(lambda part: mix_logits(self.cnn.logits(part), self.branch.logits(part), self.mix), images)

    def intensities(self, images: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(images))

    def overall(self, intensities: np.ndarray) -> np.ndarray:
        return self.cnn.overall(intensities)


class NumpyDegradationScorer(Scorer):
    """:class:`deqa.scorer.Scorer` around a :class:`NumpyDegradationNet` (no torch needed)."""

    needs_torch = False

    def __init__(self, net: NumpyDegradationNet | NumpyBranchedDegradationNet, *, model_id: str = "deqa-degradation",
                 views: DetailViews | None = None):
        self.net = net
        self.cfg = net.cfg
        self.model_id = model_id
        # Enough chunks for every core (numpy_parallel): 16 images on up to 16 cores, then CHUNK per core.
        self.default_batch_size = max(16, CHUNK * num_threads())
        if views is not None:
            views.check_heads(self.cfg.heads)
        self.views = views

    def make_collate(self) -> ResizeToArray:
        return ResizeToArray(self.cfg.image_size, self.views)

    def predict(self, batch: np.ndarray | WindowedBatch) -> list[ScoreResult]:
        if isinstance(batch, WindowedBatch):
            s = self.net.intensities(batch.whole)
            if len(batch.windows):
                s = self.views.combine(self.cfg.heads, s, self.net.intensities(batch.windows), batch.counts)
        else:
            s = self.net.intensities(batch)
        return degradation_results(s, self.net.overall(s), self.cfg.heads, self.model_id)


def load_numpy_degradation_model(
    folder: str | os.PathLike, config: dict[str, Any] | None = None
) -> NumpyDegradationNet | NumpyBranchedDegradationNet:
    """Build the numpy net from a degradation-model folder (``deqa_baseline.json`` + safetensors),
    with its encoder branch when the config has one (``"branch"`` + ``branch.safetensors``)."""
    from ..fileio import read_weights
    from ..load import BASELINE_CONFIG_NAME

    folder = Path(folder)
    if config is None:
        config = json.loads((folder / BASELINE_CONFIG_NAME).read_text())
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing weights of the degradation model")
    cnn = NumpyDegradationNet(config["model"], read_weights(path), source=str(path))
    if config.get("branch") is None:
        return cnn
    branch_cfg = EncoderBranchConfig.from_dict(config["branch"])
    branch_cfg.check_heads(cnn.cfg.heads)
    path = folder / BRANCH_WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing weights of the encoder branch named in {BASELINE_CONFIG_NAME}")
    branch = NumpyEncoderBranch(branch_cfg, len(cnn.cfg.heads), read_weights(path), source=str(path))
    return NumpyBranchedDegradationNet(cnn, branch)
