"""``deqa <command>``: one umbrella command; each subcommand lives in its own module.

The dedicated console scripts (deqa-score, deqa-train, deqa-eval, deqa-labels) are the same
entry points; ``deqa score ...`` == ``deqa-score ...``.
"""

from __future__ import annotations

import importlib
import sys

from .args import EXIT_ERROR

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `deqa score` with the built-in model never pays for transformers.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("deqa.cli.score", "score images with a quality model"),
    "labels": ("deqa.cli.labels", "turn a label file into a soft-label manifest"),
    "train": ("deqa.cli.train", "fine-tune a VLM the DeQA way"),
    "eval": ("deqa.cli.eval", "evaluate a model on IQA data sets"),
    "export": ("deqa.cli.export", "export a trained checkpoint (e.g. merge LoRA weights)"),
    "baseline": ("deqa.cli.baseline", "train / evaluate / calibrate the light baselines"),
}


def _usage() -> str:
    lines = ["usage: deqa <command> [args...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv:
        print(f"deqa: give a command\n\n{_usage()}", file=sys.stderr)
        return EXIT_ERROR
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"deqa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_ERROR
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
