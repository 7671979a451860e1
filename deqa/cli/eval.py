"""``deqa-eval``: evaluate a quality model on IQA data sets; writes predictions, tables and plots.

Examples::

    deqa-eval --datasets koniq10k --image-root /data/koniq10k/1024x768           # built-in model
    deqa-eval --model runs/qwen2vl-lora --datasets koniq spaq livec \\
              --image-roots image_roots.yaml --output runs/eval/qwen2vl-lora --compare
    accelerate launch --num_processes 4 -m deqa.cli.eval --model ... --datasets pipal ...

The run resumes: rerunning the same command scores only the images without a prediction.
Exit codes: 0 every image scored, 2 some images missing or unreadable (left out of the metrics;
everything else written), 1 bad arguments or inputs, a model that does not load, a refused output
folder, or a data set that could not be evaluated; 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from .args import EXIT_ERROR, Parser, int_at_least, plain_warnings, positive_float

__all__ = ["main", "build_parser"]

# As deqa-score and deqa baseline: 2 = some inputs (here images) could not be scored.
EXIT_PARTIAL, EXIT_INTERRUPTED = 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="deqa-eval",
        description="Evaluate a quality model (fine-tuned or base VLM, baseline, built-in) on IQA data sets: "
        "SRCC/KRCC/PLCC (raw and after the 4-parameter logistic), RMSE, bootstrap CIs, distribution gaps, "
        "plots, and published numbers side by side.",
    )
    p.add_argument(
        "--model",
        default=None,
        help="VLM checkpoint / hub id, baseline folder, or 'builtin' (default)",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for the model loader (YAML value), e.g. --model-arg dtype=bfloat16; repeatable",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        required=True,
        metavar="NAME",
        help="registered data sets or aliases",
    )
    p.add_argument(
        "--split",
        default="test",
        help="rows to evaluate: a value of the registry's split column ('test', the default, or "
        "'train'), 'all' (every row; needs no split column), or COLUMN=VALUE",
    )
    p.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="image folder of a data set (NAME=DIR; a bare DIR when only one data set is evaluated); repeatable",
    )
    p.add_argument(
        "--image-roots", metavar="YAML", help="YAML file mapping data set names to image folders"
    )
    p.add_argument(
        "--registry", metavar="YAML", help="extra data sets in the registry's YAML schema"
    )
    p.add_argument("--output", metavar="DIR", help="output folder (default: runs/eval/<model>)")
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=None,
        help="images per forward pass (default: the model's)",
    )
    p.add_argument(
        "--num-workers",
        type=int_at_least(0),
        default=2,
        help="DataLoader workers for decoding (default 2)",
    )
    p.add_argument(
        "--bootstrap",
        type=int_at_least(0, "0 = no CIs"),
        default=1000,
        help="bootstrap resamples for the CIs; 0 = none (default 1000)",
    )
    p.add_argument(
        "--alpha",
        type=positive_float,
        default=0.05,
        help="1 - confidence level of the CIs (default 0.05: 95%%)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--limit",
        type=int_at_least(3, "correlations need 3 images"),
        default=None,
        help="only the first N images of each split (a quick look)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--compare", action="store_true", help="print published results beside this run's"
    )
    p.add_argument(
        "--references",
        metavar="CSV",
        help="reference results CSV (default: the published numbers shipped with deqa, deqa/data/reference_results.csv)",
    )
    p.add_argument(
        "--training-data",
        metavar="NAMES",
        help="what the model was trained on, e.g. koniq10k+spaq, shown with --compare when the model does not record it",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="discard predictions already in the output folder"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_model_args(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-arg {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else ""
    return out


def _parse_image_roots(
    items: list[str], roots_yaml: str | None, datasets: list[str], registry: str | None
) -> dict[str, str]:
    roots: dict[str, str] = {}
    if roots_yaml:
        from ..evaluation.datasets import load_image_roots

        roots.update({k: str(v) for k, v in load_image_roots(roots_yaml, registry).items()})
    for item in items:
        name, sep, folder = item.partition("=")
        # NAME=DIR only when NAME looks like a data set name (a path may contain '=').
        if sep and re.fullmatch(r"[A-Za-z0-9_.+-]+", name) and folder:
            roots[name] = folder
        elif len(datasets) == 1:
            roots[datasets[0]] = item
        else:
            raise ValueError(
                f"--image-root {item!r}: with several data sets, write NAME=DIR (e.g. koniq10k={item})"
            )
    return roots


def _default_output(model: str | None) -> str:
    name = "builtin" if model in (None, "builtin") else Path(str(model).rstrip("/")).name or "model"
    return str(Path("runs") / "eval" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation.distributed import MainProcessFailed
    from ..evaluation.runner import EvalConfig, run_evaluation

    output_dir = args.output or _default_output(args.model)
    try:
        config = EvalConfig(
            datasets=list(args.datasets),
            image_roots=_parse_image_roots(
                args.image_root, args.image_roots, list(args.datasets), args.registry
            ),
            output_dir=output_dir,
            model=args.model,
            model_kwargs=_parse_model_args(args.model_arg),
            split=args.split,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            bootstrap=args.bootstrap,
            alpha=args.alpha,
            seed=args.seed,
            plots=not args.no_plots,
            limit=args.limit,
            registry=args.registry,
            compare=args.compare,
            references=args.references,
            training_data=args.training_data,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        with plain_warnings("deqa-eval"):
            report = run_evaluation(config)
    except KeyboardInterrupt:
        print(
            f"deqa-eval: interrupted; the predictions so far are in {output_dir}: run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (ValueError, OSError, ImportError, MainProcessFailed) as err:
        print(f"deqa-eval: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if not report.tables:  # not the main process
        return 0
    print(report.tables["md"].read_text(encoding="utf-8"), end="")
    if report.comparison:
        print()
        print(report.comparison, end="")
    for r in report.results:
        if not r.ok:
            print(f"deqa-eval: {r.dataset}: not evaluated: {r.error}", file=sys.stderr)
    print(f"\nresults: {report.output_dir}/results.{{md,csv,json}}; per data set: predictions.jsonl, metrics.json, plots",
          file=sys.stderr)  # fmt: skip
    if report.n_not_scored:
        where = "; ".join(
            f"{r.dataset}: {r.n_missing} missing, {r.n_failed} failed of {r.n_labels}"
            for r in report.results
            if r.n_missing or r.n_failed
        )
        print(
            f"deqa-eval: {report.n_not_scored} images could not be scored and are left out of the "
            f"metrics ({where}; named in each data set's metrics.json)",
            file=sys.stderr,
        )
    if not report.ok:
        return EXIT_ERROR
    return EXIT_PARTIAL if report.n_not_scored else 0


if __name__ == "__main__":
    sys.exit(main())
