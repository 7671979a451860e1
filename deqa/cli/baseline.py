"""``deqa baseline <sub>``: data, training, evaluation and calibration of the light baselines.

Subcommands (each parses, builds a config, calls the library):

  photos      collect offline photos (packages + Debian wallpapers [+ --hf-dataset]) into a folder
  synth       render a synthetic degradation set from those photos
  train       train the degradation CNN on rendered sets
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
    p.add_argument("--hf-dataset", default=None, help="also take images from this Hugging Face data set (online)")
    p.add_argument("--hf-split", default="train")
    p.add_argument("--hf-column", default="image")
    p.add_argument("--hf-limit", type=int, default=500)
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--max-side", type=int, default=1024)

    p = sub.add_parser("synth", help="render a synthetic degradation data set")
    p.add_argument("--photos", required=True, help="folder written by `deqa baseline photos`")
    p.add_argument("--split", choices=["train", "heldout"], required=True, help="which photos to crop from")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--size", type=int, default=160, help="side of the square samples in px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--heads", default=None, help="comma-separated degradations (default: all six)")

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

    p = sub.add_parser("eval", help="evaluate a degradation model on a rendered set")
    p.add_argument("--model", default=None, help="baseline folder (default: the built-in model)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int, default=64)
    _add_head_commands(sub)
    return ap


def _add_head_commands(sub) -> None:
    pass


def _photos(args) -> int:
    from ..baselines.photos import (
        find_debian_photos,
        find_package_photos,
        hf_dataset_photos,
        prepare_photos,
    )

    sources = find_package_photos()
    if args.debian_cache:
        deb = find_debian_photos(args.debian_cache)
        if not deb:
            print(f"warning: no wallpapers under {args.debian_cache}; run scripts/get_photos.sh {args.debian_cache}", file=sys.stderr)
        sources += deb
    if args.hf_dataset:
        sources += hf_dataset_photos(args.hf_dataset, args.out, split=args.hf_split, column=args.hf_column, limit=args.hf_limit)
    if not sources:
        print("no photos found: install scikit-image/scikit-learn/matplotlib or run scripts/get_photos.sh", file=sys.stderr)
        return 1
    index = prepare_photos(sources, args.out, max_side=args.max_side, heldout_fraction=args.heldout_fraction)
    groups = {s: sorted({e["group"] for e in index if e["split"] == s}) for s in ("train", "heldout")}
    print(f"{len(index)} photos in {len(groups['train']) + len(groups['heldout'])} scenes -> {args.out}")
    print(f"held-out scenes ({len(groups['heldout'])}): {', '.join(groups['heldout'])}")
    return 0


def _synth(args) -> int:
    from ..baselines.photos import read_photo_index
    from ..baselines.synth import SynthConfig, render_dataset

    kw = {"size": args.size}
    if args.heads:
        kw["heads"] = tuple(h.strip() for h in args.heads.split(",") if h.strip())
    cfg = SynthConfig(**kw)
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


def _eval(args) -> int:
    from ..baselines import builtin_model_dir
    from ..baselines.degradation import load_degradation_model
    from ..baselines.degradation_train import evaluate_degradation, predict_intensities
    from ..baselines.synth import load_synth_dataset

    folder = Path(args.model) if args.model else builtin_model_dir()
    model = load_degradation_model(folder)
    images, labels, meta = load_synth_dataset(args.data)
    if tuple(meta["config"]["heads"]) != model.cfg.heads:
        print(f"{args.data}: heads {meta['config']['heads']} differ from the model's {list(model.cfg.heads)}", file=sys.stderr)
        return 2
    pred = predict_intensities(model, images, args.batch_size)
    res = evaluate_degradation(pred, labels, list(model.cfg.heads), model.cfg.normalised_weights())
    res.update(model=str(folder), data=str(args.data), image_size=int(images.shape[1]))
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


_HEAD_COMMANDS: dict = {}
_COMMANDS = {"photos": _photos, "synth": _synth, "train": _train, "eval": _eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd in _COMMANDS:
        return _COMMANDS[args.cmd](args)
    return _HEAD_COMMANDS[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
