"""``DeQATrainer``: transformers.Trainer with the DeQA objective.

Only ``compute_loss`` (the losses of :mod:`deqa.losses`), ``prediction_step`` (level
probabilities for the validation metrics), the train sampler (same-data-set pairs,
deterministic per seed and epoch), ``log`` / ``evaluation_loop`` (every loss term, averaged
over steps and processes; validation measures the fidelity term over all same-data-set pairs)
and ``save_model`` (adds ``deqa_config.json`` and the resolved
training config) are overridden: the loop, accumulation,
mixed precision, DDP / DeepSpeed, checkpointing, resume and best-checkpoint selection are the
Trainer's own.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from ..losses import (
    DeQALossWeights,
    deqa_loss,
    fidelity_loss,
    level_mean_std,
    preference_probability,
)
from ..models.config import DeQAConfig

__all__ = ["DeQATrainer", "compute_quality_metrics", "loss_weights_from_args"]

# Batch keys consumed by the loss, never passed to the model.
_TARGET_KEYS = ("labels", "level_positions", "level_probs", "mos", "mos_std", "pair_a", "pair_b")


def loss_weights_from_args(args) -> DeQALossWeights:
    """The loss options of a :class:`~deqa.training.config.DeQATrainingArguments`."""
    return DeQALossWeights(
        ce=args.ce_weight,
        kl=args.kl_weight,
        fidelity=args.fidelity_weight,
        kl_softmax=args.kl_softmax,
        fidelity_std=args.fidelity_std,
        ce_include_level_token=args.ce_include_level_token,
    )


def compute_quality_metrics(eval_pred: EvalPrediction, level_values=None) -> dict[str, float]:
    """SRCC, KRCC, PLCC (raw and after the 4-parameter logistic), MAE and RMSE of the expected
    level score against the MOS (level scale).

    predictions: [N, K] level probabilities; label_ids: [N, 2] (mos, std) on the level scale.
    Correlations are NaN when undefined (fewer than 3 images, constant predictions).
    """
    from ..metrics import iqa_metrics

    probs = np.asarray(eval_pred.predictions, dtype=np.float64)
    labels = np.asarray(eval_pred.label_ids, dtype=np.float64)
    values = np.arange(1, probs.shape[1] + 1) if level_values is None else np.asarray(level_values)
    score = probs @ values
    mos = labels[:, 0]
    err = score - mos
    out = {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
    try:
        m = iqa_metrics(score, mos, warn=False)
        out.update(srcc=m.srcc, krcc=m.krcc, plcc=m.plcc, plcc_fitted=m.plcc_fitted)
    except ValueError:  # constant predictions early in training: correlations are undefined
        out.update(srcc=float("nan"), krcc=float("nan"), plcc=float("nan"), plcc_fitted=float("nan"))
    return out


def _all_pairs_fidelity(
    probs: torch.Tensor,
    mos: torch.Tensor,
    mos_std: torch.Tensor,
    groups: list[np.ndarray],
    weights: DeQALossWeights,
) -> float | None:
    """The fidelity term of :func:`deqa.losses.deqa_loss` over every pair of images in the same group.

    probs: [N, K] level probabilities; mos, mos_std: [N] on the level scale; groups: index
    arrays (one per data set). Per group the mean over its n(n-1) ordered pairs (the loss is
    symmetric, so this is also the mean over unordered pairs), then the groups weighted by size:
    the value the training term estimates by pairing each image with one random partner of its
    data set. None when no group has two images.
    """
    mean, std = level_mean_std(probs)
    if weights.fidelity_std is not None:
        std = torch.full_like(mean, weights.fidelity_std)
    mos, mos_std = mos.to(mean), mos_std.to(mean)
    total, count = 0.0, 0
    for idx in groups:
        n = len(idx)
        if n < 2:
            continue
        idx = torch.as_tensor(idx, dtype=torch.long)
        m, s, g, gs = mean[idx], std[idx], mos[idx], mos_std[idx]
        rows = max(1, 2**20 // n)  # [rows, n] at a time: memory stays ~10 MB for any n
        summed = 0.0
        for start in range(0, n, rows):
            a = slice(start, start + rows)
            pred = preference_probability(m[a, None], s[a, None], m[None, :], s[None, :], eps=weights.eps)
            gt = preference_probability(g[a, None], gs[a, None], g[None, :], gs[None, :], eps=weights.eps)
            loss = fidelity_loss(pred, gt, eps=weights.eps, reduction="none")
            own = torch.arange(start, min(start + rows, n))
            loss[own - start, own] = 0.0  # an image is never paired with itself
            summed += float(loss.sum())
        total += summed / (n - 1)  # = n * (mean over the group's pairs)
        count += n
    return total / count if count else None


class DeQATrainer(Trainer):
    """Trainer for DeQA fine-tuning.

    Extra arguments: ``level_token_ids`` (the K level tokens, level order), ``deqa_config``
    (written next to every checkpoint), ``loss_weights`` (default: from ``args``) and
    ``resolved_config`` (a YAML text saved next to every checkpoint). The train dataset must be a
    :class:`~deqa.training.data.QualityDataset`; batches come from
    :class:`~deqa.training.collator.DeQACollator`.
    """

    def __init__(
        self,
        *args,
        level_token_ids,
        deqa_config: DeQAConfig,
        loss_weights: DeQALossWeights | None = None,
        resolved_config: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("compute_metrics", self._metrics_fn(deqa_config))
        super().__init__(*args, **kwargs)
        self.level_token_ids = torch.as_tensor(list(level_token_ids), dtype=torch.long)
        self.deqa_config = deqa_config
        self.loss_weights = loss_weights or loss_weights_from_args(self.args)
        self.resolved_config = resolved_config
        # Our loss is a mean over this batch: the Trainer divides it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        # ... and it does not take num_items_in_batch (saves the per-step token count gather).
        self.model_accepts_loss_kwargs = False
        self._terms: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        base = self.accelerator.unwrap_model(self.model)
        if hasattr(base, "get_base_model"):  # a peft model forwards **kwargs to its base
            base = base.get_base_model()
        self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(base.forward).parameters

    @staticmethod
    def _metrics_fn(config: DeQAConfig):
        values = list(config.level_values)

        def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
            return compute_quality_metrics(eval_pred, values)

        return compute_metrics

    # ---------------------------------------------------------------------------- data
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not hasattr(dataset, "sampler"):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return dataset.sampler(seed=seed, pairs=self.loss_weights.fidelity > 0)

    # ---------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = {k: inputs.pop(k) for k in _TARGET_KEYS}
        level_positions = targets["level_positions"]
        width = inputs["input_ids"].shape[1]
        # Logits are needed only from the position before the earliest level token on: with
        # left padding that is the last few positions, never [batch, seq, vocab].
        keep = width - int(level_positions.min()) + 1
        extra = {"logits_to_keep": keep} if self._accepts_logits_to_keep else {}
        outputs = model(**inputs, use_cache=False, **extra)
        logits = outputs.logits
        offset = width - logits.shape[1]
        result = deqa_loss(
            logits,
            targets["labels"][:, offset:],
            level_positions - offset,
            self.level_token_ids.to(logits.device),
            targets["level_probs"],
            mos=targets["mos"],
            mos_std=targets["mos_std"],
            pair_a=targets["pair_a"],
            pair_b=targets["pair_b"],
            weights=self.loss_weights,
        )
        mode = "train" if model.training else "eval"
        # Validation batches hold single images (no pairs): their fidelity term is 0, not a
        # measurement, so it is not logged here; evaluation_loop measures it over all pairs.
        # Pairs or not is the same on every process.
        names = ("ce", "kl", "fidelity") if targets["pair_a"].numel() else ("ce", "kl")
        for name in names:
            self._terms[mode][f"loss_{name}"].append(getattr(result, name).detach())
        if return_outputs:
            return result.loss, {"level_probs": result.level_probs, "mos": targets["mos"], "mos_std": targets["mos_std"]}
        return result.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, out = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        labels = torch.stack([out["mos"], out["mos_std"]], dim=1)
        return loss.detach(), out["level_probs"].detach().float(), labels

    # ---------------------------------------------------------------------------- logging
    def _term_means(self, mode: str) -> dict[str, float]:
        # Every process calls this (log and evaluation_loop run on all ranks): the means are
        # averaged over processes too.
        out = {}
        for name, values in self._terms[mode].items():
            mean = torch.stack(values).float().mean().to(self.accelerator.device)
            out[name] = round(float(self.accelerator.reduce(mean, reduction="mean")), 6)
        self._terms[mode].clear()
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs or "train_loss" in logs:  # training logs carry the terms since the last log
            logs.update(self._term_means("train"))
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        self._terms["eval"].clear()
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        terms = self._term_means("eval")
        fidelity = self._validation_fidelity(output, dataloader)
        if fidelity is not None:
            terms["loss_fidelity"] = round(fidelity, 6)
            # The batches' losses had no fidelity term: eval_loss gets it, with the training
            # weight, so eval_loss and loss measure the same objective.
            key = f"{metric_key_prefix}_loss"
            if key in output.metrics:
                output.metrics[key] += self.loss_weights.fidelity * fidelity
        for name, value in terms.items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    def _validation_fidelity(self, output, dataloader) -> float | None:
        """The fidelity term over the whole validation set (see :func:`_all_pairs_fidelity`),
        from the level probabilities and MOS the loop gathered from every process, so it is the
        same on every process. Pairs never cross data sets, as in training."""
        if self.loss_weights.fidelity == 0 or output.predictions is None or output.label_ids is None:
            return None
        probs = torch.as_tensor(np.asarray(output.predictions), dtype=torch.float64)
        labels = torch.as_tensor(np.asarray(output.label_ids), dtype=torch.float64)
        # Predictions come back in dataset order (sequential eval sampler).
        samples = getattr(getattr(dataloader, "dataset", None), "samples", None)
        names = [s.dataset for s in samples] if samples is not None and len(samples) == len(probs) else None
        if names is None:
            groups = [np.arange(len(probs))]
        else:
            groups = [np.flatnonzero(np.asarray(names) == name) for name in dict.fromkeys(names)]
        return _all_pairs_fidelity(probs, labels[:, 0], labels[:, 1], groups, self.loss_weights)

    # ---------------------------------------------------------------------------- saving
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            self.deqa_config.save(output_dir)
            if self.resolved_config is not None:
                from .config import RESOLVED_CONFIG_NAME

                with open(os.path.join(output_dir, RESOLVED_CONFIG_NAME), "w", encoding="utf-8") as f:
                    f.write(self.resolved_config)
