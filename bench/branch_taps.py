"""Where the encoder branch should read the ImageNet trunk: held-out protocol per set of taps.

    python bench/branch_taps.py --build .cache/build --cnn CNN_FOLDER [--variants shipped,deepest,early]
                                [--train-data train train_branch] [--out taps.json]

For each variant the library's own recipe runs (``train_branch``: cached trunk features of the
build's training crops, the MLP, the per-head blend chosen on validation), then the held-out
protocol (``evaluate_protocol`` on the build's ``test/`` sets), beside the CNN alone. Variants:

- ``shipped``: the default taps (stem, blocks 0, 2, 4, 7, 10, 14, 15: the end of every stage);
- ``deepest``: block 15 only, the end of the trunk, closest to the ImageNet classifier's features;
- ``early``: stem and blocks 0, 2, 4 only (maps at 1/2 to 1/8 of the input size).

Each variant's blend is chosen as the build chooses it: grading SRCC on the build's validation
sweep sets (``val_sweep_*`` / ``val_iso_*``, training scenes), BCE where a head has none.
Features are cached per trunk and tap set inside the rendered sets. A variant whose taps are a
subset of the default ones gets its caches cut out of the default set's finished, digest-stamped
caches (same float16 trunk, columns of the same taps: identical numbers), so only the default set
ever runs the trunk over the training crops. Models go to ``<build>/bench_taps/<variant>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deqa.baselines.branch_train import BranchTrainConfig, imagenet_branch, train_branch, trunk_id  # noqa: E402
from deqa.baselines.degradation import load_degradation_model, model_watermark_ink  # noqa: E402
from deqa.baselines.degradation_config import EncoderBranchConfig  # noqa: E402
from deqa.baselines.degradation_train import evaluate_protocol  # noqa: E402
from deqa.baselines.encoder_branch import trunk_channels  # noqa: E402

VARIANTS = {
    "shipped": None,  # EncoderBranchConfig's default taps
    "deepest": [15],
    "early": [-1, 0, 2, 4],
}
HEADS = ("colour_cast", "blur", "watermark", "noise", "jpeg", "exposure")


def _row(name: str, m: dict) -> str:
    cells = [f"{m['sweep'][h]['srcc']:.3f} / {m['sweep_isolated'][h]['srcc']:.3f}" for h in HEADS]
    mixed = m["mixed"]
    return (f"| {name} | " + " | ".join(cells)
            + f" | {mixed['heads']['watermark']['roc_auc']:.3f} | {mixed['overall_srcc_vs_weighted_total']:.3f} |")


def _cut_caches(taps: list[int], sets: list[Path], n_heads: int, size: int) -> None:
    """Write the variant's feature caches from the default taps' finished caches, where those exist."""
    full = imagenet_branch(EncoderBranchConfig(), n_heads, size)
    part = imagenet_branch(EncoderBranchConfig(taps=tuple(taps)), n_heads, size)
    widths = [2 * c for c in trunk_channels(full.trunk, full.cfg.taps)]  # mean + std per channel
    start = dict(zip(full.cfg.taps, np.cumsum([0, *widths[:-1]]).tolist(), strict=True))
    width = dict(zip(full.cfg.taps, widths, strict=True))
    cols = np.concatenate([np.arange(start[t], start[t] + width[t]) for t in taps])
    src_id, dst_id = trunk_id(full), trunk_id(part)
    for d in sets:
        src, dst = d / "branch_features" / f"{src_id}.npy", d / "branch_features" / f"{dst_id}.npy"
        done, stamp = d / "branch_features" / f"{src_id}.done", d / "branch_features" / f"{src_id}.json"
        # The source must be finished and stamped with its images' digest (branch_features checks
        # the stamp): the cut copy carries the same stamp, so it is trusted for the same images.
        if dst.is_file() or not (src.is_file() and done.is_file() and stamp.is_file()):
            continue
        feats = np.load(src, mmap_mode="r")
        if int(done.read_text()) != len(feats):
            continue  # unfinished: the variant computes its own
        np.save(dst, np.ascontiguousarray(feats[:, cols]))
        (dst.parent / f"{dst_id}.done").write_text(str(len(feats)))
        (dst.parent / f"{dst_id}.json").write_text(stamp.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh")
    ap.add_argument("--cnn", required=True, help="degradation-model folder whose CNN the branch is blended with")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--train-data", nargs="+", default=["train"], help="training sets, relative to --build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    build = Path(args.build)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    test = build / "test"
    sweeps = sorted(str(p) for p in test.glob("sweep_*")) + sorted(str(p) for p in test.glob("iso_*"))
    for need in [test / "mixed", build / "val", *(build / t for t in args.train_data)]:
        if not (need / "meta.json").is_file():
            ap.error(f"{need}: missing rendered set (run scripts/build_default_model.sh {build} first)")

    val_sweeps = sorted(build.glob("val_sweep_*")) + sorted(build.glob("val_iso_*"))
    cnn = load_degradation_model(args.cnn, cnn_only=True)
    ink = model_watermark_ink(args.cnn)  # recorded beside each result: other-protocol sets are flagged, not hidden
    results = {"cnn alone": evaluate_protocol(cnn, test / "mixed", sweeps, model_watermark_ink=ink)}
    mixes = {}
    for v in variants:
        branch = {} if VARIANTS[v] is None else {"taps": VARIANTS[v]}
        sets = [build / t for t in args.train_data] + [build / "val", *val_sweeps]
        if VARIANTS[v] is not None and set(VARIANTS[v]) <= set(EncoderBranchConfig().taps):
            _cut_caches(VARIANTS[v], sets, len(cnn.cfg.heads), cnn.cfg.image_size)
        cfg = BranchTrainConfig(cnn=args.cnn, train_data=[str(build / t) for t in args.train_data], val_data=str(build / "val"),
                                val_sweeps=[str(p) for p in val_sweeps], out_dir=str(build / "bench_taps" / v), branch=branch,
                                num_threads=args.threads)
        summary = train_branch(cfg)
        mixes[v] = summary["mix"]
        results[v] = evaluate_protocol(load_degradation_model(cfg.out_dir), test / "mixed", sweeps, model_watermark_ink=ink)
    print("| model | " + " | ".join(f"{h} (nuisance / isolated)" for h in HEADS) + " | watermark AUC | overall |")
    print("|---|" + "---|" * (len(HEADS) + 2))
    for name, m in results.items():
        print(_row(name if name == "cnn alone" else f"CNN + branch, {name} taps", m))
    print("mix (branch share per head):", json.dumps(mixes))
    if args.out:
        Path(args.out).write_text(json.dumps({"train_data": args.train_data, "mix": mixes, "metrics": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
