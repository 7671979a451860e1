"""The multi-head degradation CNN: one small network, one intensity per degradation type.

Architecture (as specified for the built-in model):

- four stages, each conv3x3-BN-ReLU -> residual block (two conv3x3-BN, identity skip) -> 2x2
  max-pool, widths 3 -> 32 -> 64 -> 128 -> 256;
- global average pool, squeeze-excitation channel attention 256 -> 64 -> 256;
- one 3-layer MLP head per degradation (256 -> 256 -> 64 -> 1, dropout, sigmoid);
- overall quality = 1 - sum_i w_i * s_i with the head weights renormalised to sum to 1.

Speed: with a stride-1 first conv every residual block of stage 1 runs at full input resolution
and the network costs ~4.4 GMAC per 224-px image (~6 img/s on 2 CPU cores). The first stage's
conv is therefore a patchify conv (kernel = stride = ``stem_stride``, 4 by default): it still
reads every pixel (so pixel-level noise and blocking stay visible), and the four stages then run
at 56, 28, 14 and 7 px, ~0.28 GMAC per image. ``stem_stride`` is configurable (1, 2, 4).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..fileio import atomic_write, write_text_atomic
from ..results import ScoreResult
from ..scorer import Scorer
from .degradation_config import (
    BRANCH_WEIGHTS_NAME,
    DEFAULT_HEAD_WEIGHTS,
    WEIGHTS_NAME,
    DegradationModelConfig,
    DetailViews,
    EncoderBranchConfig,
    ResizeToArray,
    WindowedBatch,
    degradation_results,
    resize_square,
)

__all__ = [
    "DEFAULT_HEAD_WEIGHTS",
    "DegradationModelConfig",
    "DegradationNet",
    "DegradationScorer",
    "ResizeCollate",
    "resize_square",
    "save_degradation_model",
    "load_degradation_model",
]

class _ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class _Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        kernel = 3 if stride == 1 else stride  # stride > 1: non-overlapping patchify conv
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=1 if stride == 1 else 0, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            _ResidualBlock(cout),
            nn.MaxPool2d(2),
        )


class _SqueezeExcite(nn.Module):
    """Channel attention on the pooled feature vector: x * sigmoid(W2 relu(W1 x))."""

    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(ch, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ch), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class DegradationNet(nn.Module):
    """images [B, 3, H, W] in [0, 1] -> per-head logits [B, n_heads] (see :meth:`intensities`)."""

    # Fixed input normalisation (stored in the weights file as buffers, so it cannot drift from
    # what the model was trained with).
    def __init__(self, cfg: DegradationModelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        chans = (3, *cfg.widths)
        self.stages = nn.Sequential(
            *[_Stage(chans[i], chans[i + 1], cfg.stem_stride if i == 0 else 1) for i in range(len(cfg.widths))]
        )
        feat = cfg.widths[-1]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.se = _SqueezeExcite(feat, cfg.se_hidden)
        self.heads = nn.ModuleDict({name: self._head(feat, cfg) for name in cfg.heads})
        self.register_buffer("head_weights", torch.tensor(cfg.normalised_weights()))

    @staticmethod
    def _head(feat: int, cfg: DegradationModelConfig) -> nn.Sequential:
        layers: list[nn.Module] = []
        d = feat
        for h in cfg.head_hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            d = h
        layers.append(nn.Linear(d, 1))
        return nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.pixel_mean) / self.pixel_std
        x = self.pool(self.stages(x)).flatten(1)
        x = self.se(x)
        return torch.cat([self.heads[name](x) for name in self.cfg.heads], dim=1)

    def intensities(self, images: torch.Tensor) -> torch.Tensor:
        """Per-head degradation intensity in [0, 1]: [B, n_heads]."""
        return torch.sigmoid(self(images))

    def overall(self, intensities: torch.Tensor) -> torch.Tensor:
        """1 - weighted sum of intensities: [B, n_heads] -> [B], in [0, 1] (1 = clean)."""
        return 1.0 - (intensities * self.head_weights).sum(-1)  # per row: no batch-shaped matmul


class ResizeCollate(ResizeToArray):
    """Picklable collate: RGB images -> uint8 tensor [B, 3, S, S].

    The whole image is resized to S x S (aspect not kept) rather than centre-cropped, because
    watermarks sit in corners and a crop would throw them away. The training crops are squashed
    to a square the same way.
    """

    def __call__(self, images: list[Image.Image]) -> torch.Tensor | WindowedBatch:
        def chw(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()

        out = super().__call__(images)
        if isinstance(out, WindowedBatch):
            return WindowedBatch(chw(out.whole), chw(out.windows), out.counts)
        return chw(out)


class DegradationScorer(Scorer):
    """:class:`deqa.scorer.Scorer` around a :class:`DegradationNet` (always in eval mode)."""

    default_batch_size = 16

    def __init__(self, model: nn.Module, *, model_id: str = "deqa-degradation", device: str | None = None,
                 views: DetailViews | None = None):
        # model: a DegradationNet, or a BranchedDegradationNet (CNN + encoder branch); both have
        # cfg, intensities() and overall().
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.cfg = model.cfg
        if views is not None:
            views.check_heads(self.cfg.heads)
        self.views = views

    def make_collate(self) -> ResizeCollate:
        return ResizeCollate(self.cfg.image_size, self.views)

    def _intensities(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).float().div_(255.0)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.intensities(x)

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor | WindowedBatch) -> list[ScoreResult]:
        # A caller may have flipped the module to train mode; BN/dropout must not run that way.
        self.model.eval()
        if isinstance(batch, WindowedBatch):
            s = self._intensities(batch.whole)
            if len(batch.windows):
                combined = self.views.combine(self.cfg.heads, s.cpu().numpy(), self._intensities(batch.windows).cpu().numpy(),
                                              batch.counts)
                s = torch.from_numpy(combined).to(s.device)
        else:
            s = self._intensities(batch)
        overall = self.model.overall(s).clamp(0.0, 1.0)
        return degradation_results(s.cpu().numpy(), overall.cpu().numpy(), self.cfg.heads, self.model_id)


def save_degradation_model(model: nn.Module, out_dir: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``deqa_baseline.json`` + ``model.safetensors`` (a folder ``load_scorer`` recognises).

    ``model``: a :class:`DegradationNet`, or a
    :class:`~deqa.baselines.encoder_branch.BranchedDegradationNet`, whose branch goes to
    ``branch.safetensors`` (trunk in float16) and its config to the JSON's ``"branch"``.
    """
    from ..load import BASELINE_CONFIG_NAME

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    branch = getattr(model, "branch", None)
    cnn = model.cnn if branch is not None else model
    state = {k: v.detach().cpu().contiguous() for k, v in cnn.state_dict().items()}
    _save_safetensors(out / WEIGHTS_NAME, state, {"format": "pt", "type": "degradation"})
    cfg = {"type": "degradation", "format_version": 1, "model": cnn.cfg.to_dict()}
    if branch is not None:
        from .encoder_branch import TRUNK_DTYPE

        bstate = {
            k: (v.to(TRUNK_DTYPE) if k.startswith("trunk.") and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in branch.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
        _save_safetensors(out / BRANCH_WEIGHTS_NAME, bstate, {"format": "pt", "type": "degradation-branch"})
        cfg["branch"] = branch.cfg.to_dict()
    elif (out / BRANCH_WEIGHTS_NAME).exists():
        (out / BRANCH_WEIGHTS_NAME).unlink()  # a stale branch must not sit beside a CNN-only config
    cfg.update(extra or {})
    write_text_atomic(out / BASELINE_CONFIG_NAME, json.dumps(cfg, indent=2) + "\n")
    return out


def _canonical_safetensors(blob: bytes) -> bytes:
    """``blob`` with its header's ``__metadata__`` keys in sorted order.

    safetensors writes that map from a Rust HashMap, in an order that changes from process to
    process: the same tensors saved twice gave different bytes, so a digest of the file (a trained
    baseline's model id, branch-finetune's resume check) told one model apart from itself. Same
    keys and values, so the header keeps its length and every tensor offset stays valid; a header
    this serialisation does not reproduce is left as it is.
    """
    n = struct.unpack("<Q", blob[:8])[0]
    raw = blob[8 : 8 + n]
    text = raw.rstrip(b" ")  # the header is padded with spaces to an 8-byte boundary
    header = json.loads(text)
    if json.dumps(header, separators=(",", ":")).encode() != text or not isinstance(header.get("__metadata__"), dict):
        return blob
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    return blob[:8] + json.dumps(header, separators=(",", ":")).encode() + raw[len(text):] + blob[8 + n :]


def _save_safetensors(path: Path, state: dict, metadata: dict) -> None:
    """Written whole or not at all: the trainer rewrites the best weights during a run, and a kill
    mid-write must not leave a torn file that a resumed run keeps as its best. The same tensors
    give the same bytes (:func:`_canonical_safetensors`)."""
    from safetensors.torch import save

    with atomic_write(path, "wb") as f:
        f.write(_canonical_safetensors(save(state, metadata=metadata)))


def _load_strict(module: nn.Module, path: Path, what: str) -> None:
    from ..fileio import read_weights
    from ..load import BASELINE_CONFIG_NAME

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing weights of the {what}")
    state = read_weights(path, "pt")
    target = module.state_dict()
    # The trunk is stored in float16; the module computes in float32.
    state = {k: v.to(target[k].dtype) if k in target else v for k, v in state.items()}
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path}: weights do not match the config in {BASELINE_CONFIG_NAME}: {err}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the config in {BASELINE_CONFIG_NAME} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def model_watermark_ink(folder: str | os.PathLike) -> bool:
    """Whether the model in ``folder`` was trained on ink-matched watermarks (``synth --watermark-ink``):
    ``"watermark_ink": true`` in its ``deqa_baseline.json``, written only then (older models: false)."""
    from ..load import BASELINE_CONFIG_NAME

    return bool(json.loads((Path(folder) / BASELINE_CONFIG_NAME).read_text()).get("watermark_ink", False))


def watermark_ink_extra(ink: bool) -> dict[str, bool]:
    """The ``deqa_baseline.json`` entry that records ink-matched training labels (none for the default)."""
    return {"watermark_ink": True} if ink else {}


def load_degradation_model(folder: str | os.PathLike, config: dict[str, Any] | None = None, *, cnn_only: bool = False) -> nn.Module:
    """Rebuild the model from ``deqa_baseline.json`` and load its safetensors weights strictly.

    A :class:`DegradationNet`, or, when the config has an encoder branch (and not ``cnn_only``,
    as a warm start of the CNN wants), a
    :class:`~deqa.baselines.encoder_branch.BranchedDegradationNet`; in eval mode.
    """
    from ..load import BASELINE_CONFIG_NAME

    folder = Path(folder)
    if config is None:
        path = folder / BASELINE_CONFIG_NAME
        if not path.is_file():
            raise ValueError(f"{folder}: not a deqa baseline folder (no {BASELINE_CONFIG_NAME})")
        try:
            config = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("type", "degradation") != "degradation" or "model" not in config:
        kind = config.get("type") if isinstance(config, dict) else None
        raise ValueError(f"{folder} holds {'an encoder_head' if kind == 'encoder_head' else 'no degradation'} model; "
                         "a degradation model (written by `deqa baseline train`) is needed here")
    cfg = DegradationModelConfig.from_dict(config["model"])
    model = DegradationNet(cfg)
    _load_strict(model, folder / WEIGHTS_NAME, "degradation model")
    if cnn_only or config.get("branch") is None:
        return model.eval()
    from .encoder_branch import BranchedDegradationNet, EncoderBranch

    branch_cfg = EncoderBranchConfig.from_dict(config["branch"])
    branch_cfg.check_heads(cfg.heads)
    branch = EncoderBranch(branch_cfg, len(cfg.heads), cfg.image_size)
    _load_strict(branch, folder / BRANCH_WEIGHTS_NAME, "encoder branch")
    return BranchedDegradationNet(model, branch).eval()
