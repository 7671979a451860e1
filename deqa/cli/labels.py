"""``deqa-labels``: turn an IQA label file into a JSONL soft-label manifest and report its quality.

deqa-labels --dataset koniq10k -o koniq.jsonl                     # the registry's own copy
deqa-labels path/to/labels.csv --dataset koniq10k -o koniq.jsonl  # a file, registry scale
deqa-labels meta_info_KADID10kDataset.csv --mos-range 1 5 -o kadid.jsonl
deqa-labels train_koniq.json --format qalign-json --mos-range 0 100 -o train.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.formats import LABEL_FORMATS, read_labels
from ..data.labeling import MosScale, build_labels
from ..data.manifest import write_manifest
from ..data.registry import get_dataset
from ..levels import DEFAULT_STD, NO_STD_POLICIES, SOFT_LABEL_METHODS

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deqa-labels",
        description="Build soft labels (a JSONL manifest) from an IQA label file and print label-quality statistics.",
    )
    p.add_argument(
        "labels",
        nargs="?",
        help="label file (CSV/JSON); omit to use the --dataset's packaged labels",
    )
    p.add_argument("-o", "--output", required=True, help="manifest to write (JSONL)")
    p.add_argument(
        "--dataset",
        help="registered data set (koniq10k, kadid, ...): its score scale, and its labels if no file is given",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", *LABEL_FORMATS),
        help="label file format (default: detect)",
    )
    scale = p.add_argument_group(
        "score scale (overrides the --dataset's; DeQA-Score JSON uses its own gt_score_norm unless given)"
    )
    scale.add_argument(
        "--mos-range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="declared range of the scores",
    )
    scale.add_argument(
        "--observed-range",
        action="store_true",
        help="use the file's min/max as the range (DeQA-Score's convention)",
    )
    scale.add_argument(
        "--lower-better", action="store_true", help="scores are DMOS: lower is better"
    )
    scale.add_argument(
        "--std-scale",
        default=None,
        metavar="mos|LO:HI|none",
        help="scale of the std: 'mos' (same as the scores, default), 'LO:HI' (e.g. 1:5 for KonIQ), 'none' (ignore the std)",
    )
    lab = p.add_argument_group("soft labels")
    lab.add_argument(
        "--method",
        default="moment",
        choices=SOFT_LABEL_METHODS,
        help="soft-label method (default: moment)",
    )
    lab.add_argument(
        "--density",
        default="pdf",
        choices=("pdf", "interval"),
        help="the deqa method's density (default: pdf)",
    )
    lab.add_argument(
        "--no-std-policy",
        default="dataset_mean_std",
        choices=NO_STD_POLICIES,
        help="what to do for rows without std",
    )
    lab.add_argument(
        "--default-std",
        type=float,
        help=f"std on the 1-5 scale when the data set has none (default {DEFAULT_STD})",
    )
    sel = p.add_argument_group("columns and rows")
    sel.add_argument(
        "--split", action="append", help="keep only these splits (repeat or comma-separate)"
    )
    sel.add_argument("--image-column", help="CSV column with the image path")
    sel.add_argument("--score-column", help="CSV column with the score")
    sel.add_argument("--std-column", help="CSV column with the std")
    sel.add_argument("--split-column", help="column (CSV) or key (JSON) with the split")
    sel.add_argument(
        "--dataset-name",
        help="value of the manifest's 'dataset' field (default: --dataset or the file name)",
    )
    return p


def _std_scale(text: str | None) -> tuple[tuple[float, float] | None, bool] | None:
    """Parse --std-scale into (std_range, ignore_std); None if not given."""
    if text is None:
        return None
    if text == "mos":
        return None, False
    if text == "none":
        return None, True
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(
            f"--std-scale must be 'mos', 'none' or 'LO:HI' (e.g. 1:5), got {text!r}"
        ) from None
    return (lo, hi), False


def _resolve_scale(args, spec, table) -> MosScale | None:
    if table.mos_norm is not None and not (args.mos_range or args.observed_range):
        # DeQA-Score JSON carries its own level-scale values (gt_score_norm, std_norm); its raw
        # gt_score need not be on the registry's scale (KonIQ's is the 1-5 rating mean).
        return None
    base = MosScale.from_dataset(spec) if spec is not None else None
    std = _std_scale(args.std_scale)
    std_range, ignore_std = (
        std if std is not None else ((base.std_range, base.ignore_std) if base else (None, False))
    )
    lower_better = args.lower_better or (base.lower_better if base else False)
    if args.observed_range:
        if args.mos_range:
            raise ValueError("give either --mos-range or --observed-range, not both")
        obs = MosScale.observed(table, lower_better, std_range)
        return MosScale(obs.mos_range, lower_better, std_range, ignore_std)
    if args.mos_range:
        return MosScale(tuple(args.mos_range), lower_better, std_range, ignore_std)
    if base is not None:
        return MosScale(base.mos_range, lower_better, std_range, ignore_std)
    return None  # the file must carry level-scale values (DeQA-Score JSON); checked downstream


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}%" if pct else f"{value:.3e}"


def run(args) -> int:
    spec = get_dataset(args.dataset) if args.dataset else None
    if args.labels is None:
        if spec is None:
            raise ValueError(
                "give a label file, or --dataset NAME to use the packaged labels of a registered data set"
            )
        table = spec.read_labels()
    else:
        table = read_labels(
            args.labels,
            args.format,
            image_column=args.image_column,
            score_column=args.score_column,
            std_column=args.std_column,
            split_column=args.split_column,
        )
    scale = _resolve_scale(args, spec, table)
    if args.split:
        wanted = {s.strip() for item in args.split for s in item.split(",") if s.strip()}
        if table.split is None:
            raise ValueError(
                f"{table.path}: --split given but the file has no split column (use --split-column)"
            )
        table = table.select([s in wanted for s in table.split])
        if len(table) == 0:
            raise ValueError(f"no rows with split in {sorted(wanted)}")
    labels = build_labels(
        table,
        scale,
        args.method,
        no_std_policy=args.no_std_policy,
        default_std=args.default_std,
        density=args.density,
    )
    name = args.dataset_name or (
        spec.name if spec else Path(table.path).stem if table.path else None
    )
    n = write_manifest(args.output, labels.records(dataset=name))
    q = labels.quality(table.histogram)
    imputed = int(labels.std_imputed.sum())
    print(
        f"deqa-labels: wrote {n} records to {args.output} (data set {name}, method {args.method})"
    )
    if scale is None:
        print("  scale: the file's own level-scale values (gt_score_norm, std_norm)")
    else:
        direction = "lower is better" if scale.lower_better else "higher is better"
        std_note = "ignored" if scale.ignore_std else f"on {scale.std_range or 'the score scale'}"
        print(f"  scale: scores on {scale.mos_range} ({direction}) -> [1, 5]; std {std_note}")
    rows = [
        ("mean |mean error|", _fmt(q.mean_abs_mean_error)),
        ("max |mean error|", _fmt(q.max_abs_mean_error)),
        ("mean |std error|", _fmt(q.mean_abs_std_error)),
        ("valid vectors", _fmt(q.valid_fraction, pct=True)),
        ("Gaussian JS gap", _fmt(q.gaussian_js)),
        ("  (DeQA approx.)", _fmt(q.gaussian_js_deqa)),
        ("JS to histograms", _fmt(q.histogram_js)),
        ("std imputed", f"{imputed} rows" + (f" (policy {args.no_std_policy})" if imputed else "")),
    ]
    for key, value in rows:
        print(f"  {key:<20} {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"deqa-labels: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
