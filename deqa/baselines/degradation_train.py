"""Training and evaluation of the degradation CNN on rendered synthetic sets.

A plain loop on purpose: the model is 2.5M parameters trained on one CPU or GPU from an
in-memory uint8 array, so transformers.Trainer would add an import cost and nothing else.
The recipe: AdamW (weight decay 1e-4), cosine annealing to 1% of the peak learning rate,
gradient-norm clipping at 1.0, per-head loss weights (watermark 1.5), early stopping on the
validation loss with the best weights kept. Every epoch writes the best model, a resumable
trainer state and a JSONL log line, so an interrupted run continues where it stopped: the same
command again resumes it. An ``out_dir`` holding a run with other settings is an error (naming
them), never resumed with settings that did not train its weights; to train on from a model,
start a new ``out_dir`` with ``init_from``. The model's ``image_size`` is the data's unless the
``model`` config names one (then they must agree).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import atomic_write
from .degradation import (
    DegradationModelConfig,
    DegradationNet,
    save_degradation_model,
    watermark_ink_extra,
)
from .dictconfig import from_dict_strict
from .synth import common_watermark_ink, load_synth_dataset, read_synth_meta

__all__ = [
    "DegradationTrainConfig",
    "train_degradation",
    "predict_intensities",
    "evaluate_degradation",
    "evaluate_sweep",
    "evaluate_protocol",
    "head_loss",
    "PROTOCOL",
    "PROTOCOL_INK",
    "protocol_name",
]

# The held-out protocol's name, written into every metrics JSON. v3: isolated sweep sets graded
# beside the nuisance ones, rendered by the generator that draws watermarks in text fonts only.
PROTOCOL = "deqa-heldout-v3"
# v4: the same sets but every watermark ink-matched (`synth --watermark-ink`), so the watermark label
# means something else; the other heads' labels are v3's.
PROTOCOL_INK = "deqa-heldout-v4"


def protocol_name(watermark_ink: bool) -> str:
    """The held-out protocol of sets (or a model's training labels) with or without ink-matched watermarks."""
    return PROTOCOL_INK if watermark_ink else PROTOCOL


@dataclass
class DegradationTrainConfig:
    """Everything a training run needs; saved as ``train_config.json`` beside the weights."""

    train_data: str
    val_data: str
    out_dir: str
    model: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    min_lr_ratio: float = 0.01
    warmup_steps: int = 0  # linear warm-up from 1% of lr, then the cosine schedule
    grad_clip: float = 1.0
    patience: int = 3
    loss: str = "bce"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"watermark": 1.5})
    augment: bool = True
    seed: int = 0
    num_threads: int | None = None
    max_steps: int | None = None  # stop early (tests, smoke runs)
    device: str = "cpu"
    model_id: str = "deqa-degradation"
    # Warm start: a degradation-model folder whose weights initialise this run (a second round
    # with a fresh cosine schedule); the model config must match.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {self.loss!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in (0, 1], got {self.min_lr_ratio}")
        DegradationModelConfig.from_dict(self.model)  # fail now, not after rendering a batch

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationTrainConfig:
        return from_dict_strict(cls, d, "degradation training config")


def head_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, kind: str = "bce"
) -> torch.Tensor:
    """Weighted mean over heads of the per-head loss.

    logits, targets: [B, H] (targets in [0, 1]); weights: [H]. BCE works on the logits (soft
    targets are fine: it is minimised at sigmoid(logit) = target); MSE on sigmoid(logits).
    """
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    else:
        per = (torch.sigmoid(logits) - targets) ** 2
    return (per.mean(0) * weights).sum() / weights.sum()


def _batch(images: np.ndarray, idx: np.ndarray, device: torch.device, augment: bool, rng: np.random.Generator) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images[np.sort(idx)])).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if augment:
        # Flips keep every degradation's intensity; mirrored watermark text is still a watermark.
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)


def usable_device(name: str, what: str) -> torch.device:
    """``torch.device(name)``, checked by allocating on it: a misspelt name or a missing driver is a
    ValueError naming the option (one line from the CLI), not a traceback after the data has loaded."""
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"{what}: device {name!r} cannot be used: {str(err).splitlines()[0]}") from None
    return device


@torch.no_grad()
def predict_intensities(model: DegradationNet, images: np.ndarray, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Model intensities [N, H] for uint8 images [N, S, S, 3] (eval mode enforced)."""
    model.eval()
    dev = torch.device(device)
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[s : s + batch_size])).to(dev)  # copy: memmaps are read-only
        x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        out.append(model.intensities(x).cpu().numpy())
    return np.concatenate(out, 0) if out else np.zeros((0, len(model.cfg.heads)), np.float32)


def evaluate_degradation(pred: np.ndarray, labels: np.ndarray, heads: list[str], weights: list[float]) -> dict[str, Any]:
    """Per-head MAE, SRCC and detection ROC-AUC; overall-score SRCC against total degradation.

    pred, labels: [N, H] intensities in [0, 1]. ``weights`` (normalised) define the overall
    score 1 - sum w_i s_i; it is compared with the true weighted total (and the unweighted sum).
    """
    from sklearn.metrics import roc_auc_score

    from ..metrics import srcc as _srcc

    def spearman(a, b) -> float:
        # An untrained head can be constant: report NaN rather than stop a training run.
        try:
            return _srcc(a, b)
        except ValueError:
            return float("nan")

    pred = np.asarray(pred, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if pred.shape != labels.shape or pred.ndim != 2 or pred.shape[1] != len(heads):
        raise ValueError(f"pred {pred.shape} and labels {labels.shape} must both be [N, {len(heads)}]")
    res: dict[str, Any] = {"n": int(len(pred)), "heads": {}}
    for j, h in enumerate(heads):
        present = labels[:, j] > 0
        entry = {
            "mae": float(np.abs(pred[:, j] - labels[:, j]).mean()),
            "srcc": spearman(pred[:, j], labels[:, j]),
            "present_fraction": float(present.mean()),
        }
        if present.any() and (~present).any():
            entry["roc_auc"] = float(roc_auc_score(present, pred[:, j]))
            # What all-sample SRCC can reach when clean images are not all given exactly the same
            # value: true intensities where present, distinct tiny values (< 1e-3) where absent.
            # With most samples clean, ranking the clean ones among themselves dominates SRCC.
            ref = labels[:, j] + np.where(present, 0.0, np.random.default_rng(0).uniform(0, 1e-3, len(labels)))
            entry["srcc_ceiling_distinct_clean"] = spearman(ref, labels[:, j])
        if present.sum() > 2:
            entry["srcc_when_present"] = spearman(pred[present, j], labels[present, j])
        res["heads"][h] = entry
    w = np.asarray(weights, dtype=np.float64)
    overall_pred = 1.0 - pred @ w
    res["overall_srcc_vs_weighted_total"] = spearman(overall_pred, -(labels @ w))
    res["overall_srcc_vs_sum"] = spearman(overall_pred, -labels.sum(1))
    res["min_head_srcc"] = float(np.nanmin([e["srcc"] for e in res["heads"].values()]))
    return res


def evaluate_sweep(pred: np.ndarray, labels: np.ndarray, heads: list[str], head: str) -> dict[str, Any]:
    """Grading of one head on its sweep set: SRCC and MAE of predicted vs true intensity.

    On a sweep set (``synth --sweep HEAD``) that head's intensity is uniform in [0, 1] on every
    sample, so SRCC measures how well the model *orders* intensities, free of the mass of exact
    zeros that caps all-sample SRCC on a mixed set.
    """
    from ..metrics import srcc as _srcc

    j = heads.index(head)
    p, y = np.asarray(pred, np.float64)[:, j], np.asarray(labels, np.float64)[:, j]
    if (y <= 0).mean() > 0.01:
        raise ValueError(f"not a sweep set for {head!r}: {(y <= 0).mean():.0%} of its labels are 0")
    try:
        rho = _srcc(p, y)
    except ValueError:  # constant predictions of an untrained head
        rho = float("nan")
    return {"srcc": rho, "mae": float(np.abs(p - y).mean()), "n": int(len(y))}


def evaluate_protocol(
    model: DegradationNet, mixed: str | Path, sweeps: list[str | Path] = (), *, batch_size: int = 64, device: str = "cpu",
    model_watermark_ink: bool | None = None,
) -> dict[str, Any]:
    """The held-out protocol of the built-in model on rendered sets of held-out scenes.

    - ``mixed``: crops with 0-4 random degradations as in training: per-head MAE, detection
      ROC-AUC (present vs absent) and the overall score's SRCC against the true total degradation.
    - ``sweeps``: per head, a set rendered with ``synth --sweep HEAD`` (that head uniform in [0, 1]
      on every sample, the others random nuisance as in training) and/or one with ``--no-nuisance``
      as well (that head alone: the per-distortion protocol of TID2013 / KADID-10k): per-head
      grading SRCC, in ``sweep`` and ``sweep_isolated``.
    Every set must be rendered at the model's input size (the degradations are defined in its pixels),
    and all by one protocol: ``deqa-heldout-v4`` when their watermarks are ink-matched, else v3.
    ``model_watermark_ink`` (the model's training labels, when known) goes into the result as
    ``model_protocol``: a model can be measured on the other protocol's sets (how v11 and the ink-matched
    candidate were compared), but its card must not report such numbers as its own.
    """
    heads = list(model.cfg.heads)
    # Every set's meta first: a set of the other protocol fails before any prediction.
    ink = common_watermark_ink([(str(p), read_synth_meta(p)) for p in [mixed, *sweeps]])

    def load(path):
        images, labels, meta = load_synth_dataset(path)
        if list(meta["config"]["heads"]) != heads:
            raise ValueError(f"{path}: heads {meta['config']['heads']} differ from the model's {heads}")
        if images.shape[1] != model.cfg.image_size:
            raise ValueError(
                f"{path}: rendered at {images.shape[1]} px but the model reads {model.cfg.image_size} px; "
                f"render it with `deqa baseline synth --size {model.cfg.image_size}`"
            )
        return predict_intensities(model, images, batch_size, device), labels, meta

    pred, labels, meta = load(mixed)
    res: dict[str, Any] = {"protocol": protocol_name(ink), "image_size": model.cfg.image_size}
    if model_watermark_ink is not None:
        res["model_protocol"] = protocol_name(model_watermark_ink)
    res["mixed"] = evaluate_degradation(pred, labels, heads, model.cfg.normalised_weights())
    res["mixed"]["data"] = str(mixed)
    res["sweep"], res["sweep_isolated"] = {}, {}
    for path in sweeps:
        pred, labels, meta = load(path)
        head = meta["config"].get("sweep")
        if head is None:
            raise ValueError(f"{path}: not a sweep set (render it with `deqa baseline synth --sweep HEAD`)")
        # `synth --sweep HEAD --no-nuisance` renders k = 0 random degradations besides the swept one.
        section = "sweep_isolated" if list(meta["config"]["count_probs"]) == [1.0] else "sweep"
        if head in res[section]:
            raise ValueError(f"{path}: a second {section.replace('_', ' ')} set for {head!r} (first: {res[section][head]['data']})")
        res[section][head] = {**evaluate_sweep(pred, labels, heads, head), "data": str(path)}
    return res


def _schedule(opt: torch.optim.Optimizer, cfg: DegradationTrainConfig, total_steps: int):
    """Cosine annealing to ``min_lr_ratio * lr`` after an optional linear warm-up."""
    warm = min(cfg.warmup_steps, max(total_steps - 1, 0))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps - warm, 1), eta_min=cfg.lr * cfg.min_lr_ratio)
    if not warm:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], milestones=[warm])


# Settings that only say where and how fast a run goes, not what it trains: a resume may change them.
_RESUME_FREE = ("num_threads", "device")


def _model_config(cfg: DegradationTrainConfig, train_size: int, val_size: int) -> DegradationModelConfig:
    """The model config of a run on data rendered at ``train_size`` px: the data's size unless
    ``cfg.model`` names one (which must then agree: the degradations are defined in its pixels)."""
    if val_size != train_size:
        raise ValueError(f"val_data {cfg.val_data} is rendered at {val_size} px but train_data {cfg.train_data} at "
                         f"{train_size} px; render both with the same `deqa baseline synth --size`")
    given = cfg.model.get("image_size")
    if given is not None and given != train_size:
        raise ValueError(f"the model config's image_size is {given} but train_data {cfg.train_data} is rendered at "
                         f"{train_size} px; render it with `deqa baseline synth --size {given}`, or drop image_size "
                         "from the config to train at the data's size")
    return DegradationModelConfig.from_dict({**cfg.model, "image_size": train_size})


def _resume_mismatch(saved: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """``key: saved -> now`` for every setting that defines the run and differs."""
    defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                for f in fields(DegradationTrainConfig) if (f.default, f.default_factory) != (MISSING, MISSING)}
    saved = {**defaults, **saved}  # a key added since that run was saved: it ran with the default
    diffs = []
    for key in sorted(set(saved) | set(run)):
        if key in _RESUME_FREE:
            continue
        a, b = saved.get(key), run.get(key)
        if key == "model":  # compared as configs: {} and the defaults spelt out are the same model
            try:  # (a run saved before image_size was recorded trained at the default, as from_dict reads it)
                same = DegradationModelConfig.from_dict(a or {}) == DegradationModelConfig.from_dict(b)
            except (TypeError, ValueError):
                same = False
        elif key in ("train_data", "val_data", "out_dir", "init_from") and a and b:
            same = Path(a).resolve() == Path(b).resolve()
        else:
            same = json.loads(json.dumps(a)) == json.loads(json.dumps(b))
        if not same:
            diffs.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return diffs


def train_degradation(cfg: DegradationTrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train, keep the best-validation-loss weights in ``cfg.out_dir``; returns the summary.

    A ``cfg.out_dir`` with a trainer state is resumed when its ``train_config.json`` matches
    ``cfg`` on everything but ``num_threads`` and ``device``; otherwise a ValueError names the
    settings that differ. Nothing is written before the data and the config are checked.
    """
    from tqdm.auto import tqdm

    from ..load import BASELINE_CONFIG_NAME

    out = Path(cfg.out_dir)
    tr_images, tr_labels, tr_meta = load_synth_dataset(cfg.train_data)
    va_images, va_labels, va_meta = load_synth_dataset(cfg.val_data)
    mcfg = _model_config(cfg, int(tr_images.shape[1]), int(va_images.shape[1]))
    ink = common_watermark_ink([(f"train_data {cfg.train_data}", tr_meta), (f"val_data {cfg.val_data}", va_meta)])
    # What train_config.json records: the run as it trains, image_size included, and the watermark
    # labels when ink-matched, so a run is not resumed on sets that label watermarks otherwise.
    run_config = {**asdict(cfg), "model": {**cfg.model, "image_size": mcfg.image_size}, **watermark_ink_extra(ink)}
    state_path = out / "trainer_state.pt"
    config_path = out / "train_config.json"
    resuming = state_path.is_file()
    if resuming:
        if not config_path.is_file():
            raise ValueError(f"--out {out} holds a trainer state without train_config.json, so whether it is this run "
                             "cannot be told; choose a new --out (or delete this one to start over)")
        diffs = _resume_mismatch(json.loads(config_path.read_text()), run_config)
        if diffs:
            raise ValueError(f"--out {out} holds a training run with other settings ({'; '.join(diffs)}); resuming it "
                             "would train its weights with settings it did not start with. To continue that run, repeat "
                             "its command; to train anew, choose a new --out (or delete this one); to train on from its "
                             "weights, use a new --out with init_from")
    elif (out / BASELINE_CONFIG_NAME).is_file():
        raise ValueError(f"--out {out} already holds a model that this run did not train (no trainer state); "
                         "choose a new --out (or delete this one), or pass it as init_from to train on from it")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    device = usable_device(cfg.device, "training")
    for name, meta in (("train_data", tr_meta), ("val_data", va_meta)):
        if tuple(meta["config"]["heads"]) != mcfg.heads:
            raise ValueError(
                f"{name} {getattr(cfg, name)} has heads {meta['config']['heads']} but the model has {list(mcfg.heads)}; "
                "render the data with the same --heads"
            )
    unknown = sorted(set(cfg.loss_weights) - set(mcfg.heads))
    if unknown:
        raise ValueError(f"loss_weights names {unknown}, which are not heads {list(mcfg.heads)}")
    loss_w = torch.tensor([cfg.loss_weights.get(h, 1.0) for h in mcfg.heads], device=device)

    model = DegradationNet(mcfg)
    if cfg.init_from:
        from .degradation import load_degradation_model

        init = load_degradation_model(cfg.init_from, cnn_only=True)
        if init.cfg != mcfg:
            raise ValueError(f"init_from {cfg.init_from}: its model config differs from this run's 'model' config")
        model.load_state_dict(init.state_dict())
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr_images) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    sched = _schedule(opt, cfg, total_steps)

    out.mkdir(parents=True, exist_ok=True)
    if not resuming:  # a resumed run keeps the file that describes it
        config_path.write_text(json.dumps(run_config, indent=2) + "\n")
    state = {"epoch": 0, "step": 0, "best_val": float("inf"), "bad_epochs": 0, "history": []}
    if resuming:
        # Our own file, written below; weights_only keeps unpickling to tensors and primitives.
        ckpt = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = json.loads(ckpt["state"])
        # Dropout draws from torch's generator: restored, the next epoch draws what it would
        # have drawn without the interruption (checkpoints from before it was saved: as before).
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"].cpu())
        if ckpt.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all([t.cpu() for t in ckpt["cuda_rng"]])
        print(f"resuming from {state_path} at epoch {state['epoch']} (step {state['step']})")

    # A fresh run starts a fresh log (lines left by a run killed before its first checkpoint would
    # read as this run's); a resumed one continues after the checkpoint's epochs.
    with atomic_write(out / "train_log.jsonl") as f:
        f.writelines(json.dumps(row) + "\n" for row in state["history"])
    log = open(out / "train_log.jsonl", "a")
    step = state["step"]
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            if state["bad_epochs"] >= cfg.patience or (cfg.max_steps and step >= total_steps):
                break
            model.train()
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(len(tr_images))
            t0 = time.perf_counter()
            running = 0.0
            bar = tqdm(range(steps_per_epoch), disable=not progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
            for b in bar:
                if cfg.max_steps and step >= total_steps:
                    break
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                x = _batch(tr_images, idx, device, cfg.augment, rng)
                y = torch.from_numpy(tr_labels[np.sort(idx)]).to(device)
                loss = head_loss(model(x), y, loss_w, cfg.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                step += 1
                running = 0.9 * running + 0.1 * loss.item() if b else loss.item()
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})")
            val = _validate(model, va_images, va_labels, loss_w, cfg, device)
            improved = val["loss"] < state["best_val"]
            if improved:
                state["best_val"] = val["loss"]
                state["bad_epochs"] = 0
                save_degradation_model(model, out, extra={"model_id": cfg.model_id, **watermark_ink_extra(ink)})
            else:
                state["bad_epochs"] += 1
            row = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": running,
                "grad_norm": float(grad_norm),
                "lr": sched.get_last_lr()[0],
                "val_loss": val["loss"],
                "val_mae": val["mae"],
                "val_min_srcc": val["min_srcc"],
                "best": improved,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(row))
            log.write(json.dumps(row) + "\n")
            log.flush()
            state.update(epoch=epoch + 1, step=step)
            state["history"].append(row)
            with atomic_write(state_path, "wb") as f:  # a kill mid-save keeps the last epoch's checkpoint
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "state": json.dumps(state),
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    },
                    f,
                )
    finally:
        log.close()
    return {"best_val_loss": state["best_val"], "epochs_run": state["epoch"], "steps": step, "out_dir": str(out)}


@torch.no_grad()
def _validate(model, images, labels, loss_w, cfg, device) -> dict[str, Any]:
    pred = predict_intensities(model, images, cfg.batch_size, str(device))
    logits = torch.logit(torch.from_numpy(pred).clamp(1e-6, 1 - 1e-6))
    loss = head_loss(logits.to(device), torch.from_numpy(labels).to(device), loss_w, cfg.loss).item()
    metrics = evaluate_degradation(pred, labels, list(model.cfg.heads), model.cfg.normalised_weights())
    return {
        "loss": loss,
        "mae": {h: round(m["mae"], 4) for h, m in metrics["heads"].items()},
        "min_srcc": round(metrics["min_head_srcc"], 4),
    }
