"""DeQA training losses: KL on the level tokens, pairwise fidelity, next-token CE on the answer.

Pure functions of tensors. Shapes use B = batch, T = kept sequence length, V = vocabulary,
K = number of levels (5: bad, poor, fair, good, excellent; the order of ``deqa.levels``).

The DeQA-Score objective (official weights) is

    loss = 1.0 * fidelity + 0.05 * (next-token CE + KL)

where
- KL compares the soft label with the model's level distribution at the level position
  (the position whose next-token prediction is the level word);
- fidelity compares, for pairs of images from the same data set, the predicted probability
  that A is better than B, Phi((mu_A - mu_B) / sqrt(s_A^2 + s_B^2)), with the same quantity from
  the human MOS / std (Tsai et al.'s fidelity loss 1 - sqrt(p g) - sqrt((1 - p)(1 - g)));
- CE is the usual shifted next-token cross-entropy on the answer tokens, with the level token
  left out (its target is the soft label, handled by the KL term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LevelSoftmax",
    "DeQALossWeights",
    "DeQALossOutput",
    "level_log_probs",
    "level_mean_std",
    "kl_level_loss",
    "preference_probability",
    "fidelity_loss",
    "answer_ce_loss",
    "deqa_loss",
]

LevelSoftmax = Literal["closed", "full"]

# Ignore index of torch's cross-entropy and of the collator's labels.
IGNORE_INDEX = -100


def level_log_probs(
    logits: Tensor, level_token_ids: Tensor, *, softmax: LevelSoftmax = "closed"
) -> Tensor:
    """Log-probabilities of the K level tokens at one position.

    logits: [B, V] next-token logits at the level position. level_token_ids: [K] (long).
    softmax="closed": log-softmax over the K level logits only (sums to 1 over the levels; the
    distribution deqa scores with). softmax="full": log-softmax over the whole vocabulary, then the
    K level entries (the official DeQA-Score KL; the K probabilities sum to <= 1, the rest of the
    mass sits on other tokens and the KL pushes it onto the levels).
    Returns [B, K].
    """
    if softmax == "closed":
        return torch.log_softmax(_upcast(logits[:, level_token_ids]), dim=-1)
    if softmax == "full":
        return torch.log_softmax(_upcast(logits), dim=-1)[:, level_token_ids]
    raise ValueError(f"softmax must be 'closed' or 'full', got {softmax!r}")


def level_mean_std(
    probs: Tensor, values: Tensor | None = None, *, eps: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the level value under ``probs``.

    probs: [B, K] (not renormalised), values: [K] (default 1..K). Returns (mean [B], std [B]).
    std = sqrt(max(var, 0) + eps): the eps keeps the gradient finite for one-hot distributions.
    """
    if values is None:
        values = torch.arange(1, probs.shape[-1] + 1, dtype=probs.dtype, device=probs.device)
    values = values.to(probs)
    mean = probs @ values
    var = probs @ (values * values) - mean * mean
    return mean, torch.sqrt(var.clamp_min(0.0) + eps)


def kl_level_loss(
    logits: Tensor,
    target_probs: Tensor,
    level_token_ids: Tensor,
    *,
    softmax: LevelSoftmax = "closed",
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """KL(target || predicted level distribution) at the level position.

    logits: [B, V] logits at the level position; target_probs: [B, K] soft labels in level order
    (may sum to slightly less or more than 1, as the official labels do: they are used as given);
    level_token_ids: [K]. Terms with target 0 contribute 0 (0 log 0 = 0).
    Returns a scalar ("mean" over B, "sum"), or [B] ("none").
    """
    if target_probs.shape != (logits.shape[0], level_token_ids.numel()):
        raise ValueError(
            f"target_probs has shape {tuple(target_probs.shape)}, expected "
            f"({logits.shape[0]}, {level_token_ids.numel()}) = (batch, number of levels)"
        )
    log_q = level_log_probs(logits, level_token_ids, softmax=softmax)
    target = target_probs.to(log_q.dtype)
    # xlogy gives 0 * log 0 = 0 and a zero gradient there, unlike target * target.log().
    per_sample = (torch.special.xlogy(target, target) - target * log_q).sum(dim=-1)
    return _reduce(per_sample, reduction)


def preference_probability(
    mean_a: Tensor, std_a: Tensor, mean_b: Tensor, std_b: Tensor, *, eps: float = 1e-8
) -> Tensor:
    """P(A better than B) = Phi((mean_a - mean_b) / sqrt(std_a^2 + std_b^2 + eps)).

    All inputs [B] (std may be a Python float broadcast by the caller). eps keeps the ratio finite
    when both stds are 0 (equal means then give 0.5, different means saturate to 0 or 1).
    Returns [B] in [0, 1].
    """
    scale = torch.sqrt(std_a * std_a + std_b * std_b + eps)
    return torch.special.ndtr((mean_a - mean_b) / scale)


def fidelity_loss(
    pred: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-8,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """Fidelity loss 1 - sqrt(pred * target + eps) - sqrt((1 - pred)(1 - target) + eps).

    pred, target: [B] preference probabilities in [0, 1]. The eps inside the square roots keeps
    gradients finite at 0 and 1 (at pred == target the loss is ~ -2 sqrt(eps) instead of 0).
    Returns a scalar ("mean", "sum") or [B] ("none").
    """
    target = target.to(pred.dtype)
    per_pair = (
        1.0
        - torch.sqrt(pred * target + eps)
        - torch.sqrt((1.0 - pred) * (1.0 - target) + eps)
    )
    return _reduce(per_pair, reduction)


def answer_ce_loss(
    logits: Tensor,
    labels: Tensor,
    level_positions: Tensor | None = None,
    *,
    include_level_token: bool = False,
) -> Tensor:
    """Shifted next-token cross-entropy on the answer tokens (mean over counted tokens).

    logits: [B, T, V]; labels: [B, T] with IGNORE_INDEX (-100) outside the answer, aligned with
    the logits' sequence (logits[:, t] predicts labels[:, t + 1]). level_positions: [B], index in
    the same T axis of the level token; its label is dropped unless include_level_token (the KL
    term trains that token against the soft label instead). Returns a scalar; 0 (with a graph) if
    no token is counted.
    """
    labels = labels.clone()
    if not include_level_token:
        if level_positions is None:
            raise ValueError("level_positions is required when include_level_token is False")
        rows = torch.arange(labels.shape[0], device=labels.device)
        labels[rows, level_positions] = IGNORE_INDEX
    shift_logits = _upcast(logits[:, :-1, :])
    shift_labels = labels[:, 1:]
    counted = (shift_labels != IGNORE_INDEX).sum()
    total = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total / counted.clamp_min(1)


@dataclass(frozen=True)
class DeQALossWeights:
    """Weights and options of the combined objective. Defaults = DeQA-Score's official recipe.

    fidelity_std: None = use the std of the predicted level distribution (the paper); a number =
    that fixed std for every prediction (the official code uses 1.0).
    """

    ce: float = 0.05
    kl: float = 0.05
    fidelity: float = 1.0
    kl_softmax: LevelSoftmax = "full"
    fidelity_std: float | None = 1.0
    ce_include_level_token: bool = False
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("ce", "kl", "fidelity"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"loss weight {name!r} must be finite and >= 0, got {value}")
        if self.kl_softmax not in ("closed", "full"):
            raise ValueError(f"kl_softmax must be 'closed' or 'full', got {self.kl_softmax!r}")
        if self.fidelity_std is not None and not self.fidelity_std > 0:
            raise ValueError(f"fidelity_std must be > 0 or None, got {self.fidelity_std}")


@dataclass
class DeQALossOutput:
    """The combined loss and its (unweighted) terms; level_probs are closed-set, [B, K]."""

    loss: Tensor
    ce: Tensor
    kl: Tensor
    fidelity: Tensor
    level_probs: Tensor


def deqa_loss(
    logits: Tensor,
    labels: Tensor,
    level_positions: Tensor,
    level_token_ids: Tensor,
    target_probs: Tensor,
    *,
    mos: Tensor | None = None,
    mos_std: Tensor | None = None,
    pair_a: Tensor | None = None,
    pair_b: Tensor | None = None,
    weights: DeQALossWeights = DeQALossWeights(),
) -> DeQALossOutput:
    """The full DeQA objective on one batch.

    logits: [B, T, V] (any trailing window of the sequence), labels: [B, T] aligned with it,
    level_positions: [B] index of the level token in that window (>= 1), level_token_ids: [K],
    target_probs: [B, K]. For the fidelity term: mos, mos_std [B] (one data set's scale per pair)
    and pair_a, pair_b: [P] indices into the batch (pairs are drawn from the same data set).
    Terms whose weight is 0, or fidelity without pairs, are returned as 0 and not computed.
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    level_logits = logits[rows, level_positions - 1]  # [B, V]: predicts the level token
    zero = _upcast(logits.new_zeros(()))

    ce = (
        answer_ce_loss(
            logits, labels, level_positions, include_level_token=weights.ce_include_level_token
        )
        if weights.ce > 0
        else zero
    )
    kl = (
        kl_level_loss(level_logits, target_probs, level_token_ids, softmax=weights.kl_softmax)
        if weights.kl > 0
        else zero
    )
    probs = torch.softmax(_upcast(level_logits[:, level_token_ids]), dim=-1)

    fid = zero
    if weights.fidelity > 0 and pair_a is not None and pair_a.numel() > 0:
        if mos is None or mos_std is None or pair_b is None:
            raise ValueError("the fidelity loss needs mos, mos_std, pair_a and pair_b")
        mean, std = level_mean_std(probs)
        if weights.fidelity_std is not None:
            std = torch.full_like(mean, weights.fidelity_std)
        pred = preference_probability(
            mean[pair_a], std[pair_a], mean[pair_b], std[pair_b], eps=weights.eps
        )
        mos, mos_std = mos.to(mean), mos_std.to(mean)
        gt = preference_probability(
            mos[pair_a], mos_std[pair_a], mos[pair_b], mos_std[pair_b], eps=weights.eps
        )
        fid = fidelity_loss(pred, gt, eps=weights.eps)

    total = weights.ce * ce + weights.kl * kl + weights.fidelity * fid
    return DeQALossOutput(loss=total, ce=ce, kl=kl, fidelity=fid, level_probs=probs)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _upcast(x: Tensor) -> Tensor:
    # Softmax / log-softmax of bf16 logits loses the small level probabilities: compute in
    # float32 at least (float64 stays float64, which the gradient checks rely on).
    return x if x.dtype == torch.float64 else x.float()
