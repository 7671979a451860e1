"""``deqa-labels``: turn an IQA label file into a JSONL soft-label manifest and report its quality.

deqa-labels --dataset koniq10k -o koniq.jsonl                     # the registry's own copy
deqa-labels path/to/labels.csv --dataset koniq10k -o koniq.jsonl  # a file, registry scale
deqa-labels meta_info_KADID10kDataset.csv --mos-range 1 5 -o kadid.jsonl
deqa-labels train_koniq.json --format qalign-json --mos-range 0 100 -o train.jsonl
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ..data.formats import LABEL_FORMATS, read_labels
from ..data.labeling import MosScale, build_labels
from ..data.manifest import write_manifest
from ..data.registry import get_dataset
from ..levels import DEFAULT_MID_STD, DEFAULT_STD, NO_STD_POLICIES, SOFT_LABEL_METHODS
from .args import EXIT_ERROR, Parser, non_negative_float

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    p = Parser(
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
        help="the deqa method's density (default: pdf; only --method deqa has one)",
    )
    lab.add_argument(
        "--no-std-policy",
        default="sos",
        choices=NO_STD_POLICIES,
        help="what to do for rows without std: sos (default) = the std the SOS hypothesis predicts for "
        "the row's MOS, smaller toward the scale's ends, fitted to the rows that have one; "
        "dataset_mean_std = their mean; binary = two-level labels; error",
    )
    lab.add_argument(
        "--default-std",
        type=non_negative_float,
        help=f"when no row has a std: the std at mid-scale (MOS 3) for sos (default {DEFAULT_MID_STD}), "
        f"the std of every row for dataset_mean_std (default {DEFAULT_STD}); on the 1-5 scale",
    )
    sel = p.add_argument_group("columns and rows")
    sel.add_argument(
        "--split",
        action="append",
        help="keep only these splits (repeat or comma-separate); COLUMN=VALUE selects on another "
        "column, e.g. official_split=test",
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
        return MosScale(obs.mos_range, lower_better, std_range, ignore_std, source="the file's own min/max, --observed-range")
    if args.mos_range:
        return MosScale(tuple(args.mos_range), lower_better, std_range, ignore_std)
    if base is not None:
        return MosScale(base.mos_range, lower_better, std_range, ignore_std,
                        source=f"{base.source}; --mos-range LO HI overrides it")
    return None  # the file must carry level-scale values (DeQA-Score JSON); checked downstream


def _split_mask(table, items: list[str]) -> np.ndarray:
    """Rows whose split is one of ``items`` ("test", or "COLUMN=VALUE" for any column, the split
    column included)."""
    mask = np.zeros(len(table), bool)
    for item in (part.strip() for text in items for part in text.split(",")):
        if not item:
            continue
        column, value = (x.strip() for x in item.split("=", 1)) if "=" in item else (None, item)
        if column is None:
            labels, where = table.split, "split column"
            if labels is None:
                raise ValueError(f"{table.path}: --split {item}: the file has no split column (name it with "
                                 f"--split-column{_columns_hint(table)})")
        else:
            labels, where = table.named_columns().get(column), f"column {column!r}"
            if labels is None:
                raise ValueError(f"{table.path}: --split {item}: the file has no column {column!r}{_columns_hint(table)}")
        hit = np.array([str(v) == value for v in labels])
        if not hit.any():
            raise ValueError(f"{table.path}: --split {item}: no row has {value!r} in its {where}; "
                             f"values present: {sorted({str(v) for v in labels})}")
        mask |= hit
    return mask


def _columns_hint(table) -> str:
    return f", or select on one of {sorted(table.extra)} with --split COLUMN=VALUE" if table.extra else ""


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
    if args.density != "pdf" and args.method != "deqa":
        raise ValueError(f"--density {args.density} is an option of --method deqa only (got --method {args.method})")
    scale = _resolve_scale(args, spec, table)
    if args.split:
        table = table.select(_split_mask(table, args.split))
    labels = build_labels(
        table,
        scale,
        args.method,
        no_std_policy=args.no_std_policy,
        # the registry entry's default_std unless the command line gives one
        default_std=args.default_std if args.default_std is not None else (spec.default_std if spec else None),
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = run(args)
        for w in caught:  # deqa's own (a file's std that could not be mapped): one plain line
            if issubclass(w.category, UserWarning):
                print(f"deqa-labels: warning: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        sys.stdout.flush()  # a broken pipe shows here, not in Python's own flush at exit
        return rc
    except BrokenPipeError:
        # The reader of the report left (`| head`); the manifest was written before the first print.
        # Point stdout at devnull so that Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:
        print(f"deqa-labels: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
