"""EfficientNet-Lite's convolutional trunk in numpy: the built-in model's encoder branch without torch.

Why numpy: the built-in model must start in well under 3 s, and ``import torch`` alone costs more
than that on a 2-core CPU (see :mod:`.degradation_numpy`). The trunk is the stem and the first
MBConv blocks of an EfficientNet-Lite (ReLU6, no squeeze-excite: the "Lite" variant), read from
the same state dict as the torch module ``efficientnet_lite_pytorch.EfficientNet`` (keys
``_conv_stem.*``, ``_bn0.*``, ``_blocks.N.*``). The tests hold the two to the same features.

Layout NHWC. Batch norm (eval statistics, eps 1e-3 as in EfficientNet) is folded into the conv
before it; 1x1 convs are matmuls; the stem is one im2col matmul; depthwise convs accumulate k*k
shifted slices per image and band of rows (numpy has no depthwise conv; the band stays in cache).
Padding is TensorFlow's "same", as the torch package pads. A batch is split over threads by
:func:`~deqa.baselines.numpy_parallel.map_batch` (every op here is single-core work otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .numpy_parallel import map_batch

__all__ = ["NumpyEffNetTrunk", "tap_features", "TAP_STEM"]

_BN_EPS = 1e-3  # EfficientNet's batch_norm_epsilon
TAP_STEM = -1  # tap index of the stem's output (block taps are 0..n_blocks-1)
_CHUNK_BYTES = 1 << 20  # input + output bytes of one band of a depthwise conv (see _depthwise)


def _same_pad(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TensorFlow "same" padding of one axis: (before, after, output size)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0, out=x)


def tap_features(x: np.ndarray) -> np.ndarray:
    """Mean and (population) std over H, W of NHWC maps: [N, H, W, C] -> [N, 2C]."""
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None, :]
    # einsum's one-pass sum of squares: half the time of ndarray.std over two axes, same values
    var = np.einsum("npc,npc->nc", centred, centred) / (h * w)
    return np.concatenate([mean, np.sqrt(var)], axis=1)


class NumpyEffNetTrunk:
    """Stem + MBConv blocks ``0..last tap`` of an EfficientNet-Lite, features pooled at ``taps``.

    ``state``: the torch module's state dict as numpy arrays (any float dtype; computed in
    float32). ``strides``: each block's depthwise stride (not recoverable from the weights).
    ``taps``: :data:`TAP_STEM` and/or block indices whose outputs are pooled by
    :func:`tap_features`, in the order given. ``source`` names the weights in error messages.
    """

    def __init__(self, state: dict[str, np.ndarray], strides: Sequence[int], taps: Sequence[int], *, source: str = "weights"):
        self.source = source
        self.used: set[str] = set()  # state keys read, for the caller's strictness check
        self.taps = tuple(int(t) for t in taps)
        if not self.taps or min(self.taps) < TAP_STEM or max(self.taps) >= len(strides):
            raise ValueError(f"{source}: taps {list(self.taps)} must be -1 (stem) or block indices < {len(strides)}")
        self._state = state
        self.stem = self._conv_bn("_conv_stem.weight", "_bn0")
        self.blocks = []
        for i in range(max(self.taps) + 1):
            p = f"_blocks.{i}"
            expand = self._conv_bn(f"{p}._expand_conv.weight", f"{p}._bn0") if f"{p}._expand_conv.weight" in state else None
            dw_w, dw_b = self._conv_bn(f"{p}._depthwise_conv.weight", f"{p}._bn1")
            proj = self._conv_bn(f"{p}._project_conv.weight", f"{p}._bn2")
            c_in = expand[0].shape[1] if expand else dw_w.shape[0]  # the block's input channels
            # depthwise weight [C, 1, k, k] -> [k, k, C]; 1x1 weights [O, I, 1, 1] -> [I, O]
            dw = (np.ascontiguousarray(dw_w[:, 0].transpose(1, 2, 0)), dw_b)
            expand = (np.ascontiguousarray(expand[0][:, :, 0, 0].T), expand[1]) if expand else None
            proj_w = np.ascontiguousarray(proj[0][:, :, 0, 0].T)
            stride = int(strides[i])
            residual = stride == 1 and c_in == proj_w.shape[1]
            self.blocks.append((expand, dw, (proj_w, proj[1]), stride, residual))
        w, b = self.stem
        self.stem = (np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])), b, w.shape[-1])
        del self._state

    def _conv_bn(self, weight_key: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
        for key in (weight_key, *(f"{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var"))):
            if key not in self._state:
                raise ValueError(f"{self.source}: encoder trunk tensor {key!r} missing")
            self.used.add(key)
        w = self._state[weight_key].astype(np.float32)
        g, beta, mean, var = (self._state[f"{bn}.{p}"].astype(np.float32) for p in ("weight", "bias", "running_mean", "running_var"))
        scale = g / np.sqrt(var + _BN_EPS)
        if scale.shape[0] != w.shape[0]:
            raise ValueError(f"{self.source}: {bn} has {scale.shape[0]} channels, {weight_key} {w.shape[0]}")
        return (w * scale[:, None, None, None]).astype(np.float32), (beta - mean * scale).astype(np.float32)

    def _stem(self, x: np.ndarray) -> np.ndarray:
        w, b, k = self.stem
        n, h, wd, c = x.shape
        top, bottom, oh = _same_pad(h, k, 2)
        left, right, ow = _same_pad(wd, k, 2)
        xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        # rows in (kh, kw, C) order, as the weight was reshaped in __init__
        cols = np.stack([xp[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2] for i in range(k) for j in range(k)], axis=3)
        return (cols.reshape(n * oh * ow, k * k * c) @ w + b).reshape(n, oh, ow, -1)

    @staticmethod
    def _depthwise(x: np.ndarray, w: np.ndarray, b: np.ndarray, s: int, *, relu6: bool = False) -> np.ndarray:
        """Depthwise k x k conv (w: [k, k, C]) with "same" padding and stride ``s`` on NHWC ``x``,
        followed by ReLU6 when ``relu6``."""
        n, h, wd, c = x.shape
        k = w.shape[0]
        top, bottom, oh = _same_pad(h, k, s)
        left, right, ow = _same_pad(wd, k, s)
        out = np.empty((n, oh, ow, c), np.float32)
        # Output rows per chunk: the k*k passes of one chunk then run on its ~1 MiB of input and
        # output rows while they sit in L2, not on the whole map (the early blocks' maps are
        # several MiB per image). With ReLU6 applied per band and the one-pass std of tap_features,
        # bench/baseline_speed.py measured the numpy network at 17.5 -> 20.0 images/s (BENCHMARKS.md).
        rows = max(1, min(oh, _CHUNK_BYTES // (ow * c * 4 * (1 + s))))

        xp = np.zeros((h + top + bottom, wd + left + right, c), np.float32)
        tmp = np.empty((rows, ow, c), np.float32)
        for m in range(n):  # one image at a time, one band of output rows at a time
            xp[top : top + h, left : left + wd] = x[m]
            for r0 in range(0, oh, rows):
                nr = min(rows, oh - r0)
                o, t = out[m, r0 : r0 + nr], tmp[:nr]
                o[:] = b
                for i in range(k):
                    first = r0 * s + i
                    for j in range(k):
                        np.multiply(xp[first : first + s * nr : s, j : j + s * ow : s], w[i, j], out=t)
                        o += t
                if relu6:
                    _relu6(o)
        return out

    def features(self, x: np.ndarray) -> np.ndarray:
        """x: [N, H, W, 3] float32, already normalised -> [N, sum over taps of 2C] pooled features."""
        return map_batch(self._features, x)

    def _features(self, x: np.ndarray) -> np.ndarray:
        feats = {}
        h = _relu6(self._stem(x))
        if TAP_STEM in self.taps:
            feats[TAP_STEM] = tap_features(h)
        for i, (expand, (dw_w, dw_b), (proj_w, proj_b), stride, residual) in enumerate(self.blocks):
            inp = h
            if expand is not None:
                n, hh, ww, c = h.shape
                h = _relu6((h.reshape(-1, c) @ expand[0] + expand[1]).reshape(n, hh, ww, -1))
            h = self._depthwise(h, dw_w, dw_b, stride, relu6=True)
            n, hh, ww, c = h.shape
            h = (h.reshape(-1, c) @ proj_w + proj_b).reshape(n, hh, ww, -1)
            if residual:
                h += inp
            if i in self.taps:
                feats[i] = tap_features(h)
        return np.concatenate([feats[t] for t in self.taps], axis=1)
