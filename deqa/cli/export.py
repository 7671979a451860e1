"""``deqa export``: turn a training checkpoint into a standalone model.

    deqa export outputs/run/checkpoint-600 --merge -o outputs/run-merged [--dtype bf16]

Exit codes: 0 written; 1 bad arguments or checkpoint.
"""

from __future__ import annotations

import sys

from .args import EXIT_ERROR, Parser

__all__ = ["main"]

_DTYPES = ("auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32")


def _parser() -> Parser:
    p = Parser(prog="deqa export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a deqa-train output folder or checkpoint-N folder (LoRA adapter)")
    p.add_argument("--merge", action="store_true", help="fold the LoRA weights into the base model")
    p.add_argument("-o", "--output", required=True, help="folder for the exported model (created)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=_DTYPES,
        help="dtype of the written weights (default auto: the dtype the run trained in, so the merged "
        "model scores as the checkpoint does; bf16 halves a float32 run's size but moves scores by ~1e-3)",
    )
    p.add_argument("--device", default="cpu", help="where to merge (cpu, cuda, ...)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.merge:
        parser.error("nothing to do; pass --merge to write a merged model")
    from deqa.training.export import merge_checkpoint

    try:
        out = merge_checkpoint(
            args.checkpoint,
            args.output,
            dtype=args.dtype,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    except (ValueError, OSError) as err:
        print(f"deqa export: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    print(f"merged model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
