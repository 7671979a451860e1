"""``deqa-train``: fine-tune a VLM the DeQA way from a YAML config (+ key=value overrides).

    deqa-train --config configs/train/tiny_cpu.yaml max_steps=20 --learning_rate 1e-4
    accelerate launch --config_file configs/accelerate/multi_gpu_ddp.yaml -m deqa.cli.train --config ...
"""

from __future__ import annotations

import sys

from .args import EXIT_ERROR, Parser, plain_warnings

__all__ = ["main"]


def _parser() -> Parser:
    # Parser: a bad argument exits 1, as a bad config value does (and as in deqa-score).
    parser = Parser(
        prog="deqa-train",
        description="Fine-tune a vision-language model with DeQA soft labels (KL + fidelity + CE).",
        epilog="Overrides: key=value, --key value, --key=value; lists as --key a b or key=[a,b]. "
        "Keys are the fields of the YAML config (see configs/train/*.yaml and README).",
    )
    parser.add_argument("--config", required=True, help="training YAML (configs/train/*.yaml)")
    return parser


def _parse(argv: list[str] | None):
    """``--config`` + overrides -> TrainConfig (raises ConfigError)."""
    args, overrides = _parser().parse_known_args(argv)
    from deqa.training.config import ConfigWarning, load_train_config

    with plain_warnings("deqa-train", ConfigWarning, always=True):  # a key set but unused
        return load_train_config(args.config, overrides)


def _error(err: BaseException) -> int:
    text = str(err).strip()
    if "\nOriginal Traceback" in text:
        # Re-raised from a DataLoader worker: the text holds the worker's traceback, whose last
        # line ("module.Error: message") is the message.
        text = text.splitlines()[-1].split(": ", 1)[-1]
    print(f"deqa-train: error: {text}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    # argparse answers --help and usage errors before transformers (~8 s) is imported.
    _parser().parse_known_args(argv)
    from deqa.training.config import ConfigError
    from deqa.training.data import TrainingDataError
    from deqa.training.recipe import DeQARecipe

    try:
        config = _parse(argv)
    except ConfigError as err:
        return _error(err)
    recipe = DeQARecipe(config)
    try:
        # Bad inputs (no checkpoint to resume, missing manifests/images/model, a data set that
        # cannot be paired, a prompt over max_length) fail here, with the file named, before the
        # weights load.
        recipe.setup()
    except (ValueError, OSError) as err:
        return _error(err)
    try:
        recipe.train()
    except TrainingDataError as err:
        # A later image that cannot be read or does not fit max_length; any other error during
        # training is a bug to report, and keeps its traceback.
        return _error(err)
    recipe.cleanup()
    return 0

if __name__ == "__main__":
    sys.exit(main())
