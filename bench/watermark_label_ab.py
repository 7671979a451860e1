"""Which watermark label is the CNN best at grading? A 1-epoch proxy for a full rebuild.

    python bench/watermark_label_ab.py --build .cache/build --cnn CNN_FOLDER --work .cache/wm_ab
                                       [--arms v3 ink size] [--n 30000] [--epochs 1] [--out wm_ab.json]

The label t of a watermark sets its opacity and a size factor; the word and the font are drawn at
random, and marks of one t differ several times over in the ink they leave (BENCHMARKS.md, "Where
watermark grading is lost": fixing word and font lifted v10's grading by ~0.03). Two ways to even
that out, each a variant of the generator's watermark with the same random numbers:

- ``v3``: the shipped label (protocol deqa-heldout-v3), the control;
- ``ink``: ``synth --watermark-ink`` (protocol v4): the opacity scaled to match a reference mark's
  ink. A full rebuild measured it (0.780 / 0.746 on its own held-out marks against v11's 0.875 /
  0.870 on v3's), so this arm calibrates the proxy: it should come out below ``v3`` too;
- ``size``: ``apply_watermark(size_match=True)``: the opacity as v3, the text size scaled so a
  word's inked area rather than its font size follows t.

Each arm: the CNN (``--cnn``, CNN only) trained on for ``--epochs`` epoch(s) by the build's
round recipe (lr 1e-3, 200 warm-up steps, cosine to 1%, batch 32, seed 8, patience 2) on ``--n``
fresh crops of the build's training photos (render seed 107: the same crops, plans and draws in
every arm; only the watermarks differ), validated on the build's validation draw (seed 102)
rendered by the arm's generator. Then every model, the starting CNN included, grades (SRCC with t,
CNN only: the built-in model's blend gives watermark 0.9 to the CNN) the held-out watermark sweeps
(the build's ``test/sweep_watermark`` and ``test/iso_watermark`` photos and seeds) as each arm
draws them. All sets are written under ``--work/<arm>/``; the ``size`` arm's sets carry v3's meta
(the knob is an analysis option, not a SynthConfig field), so they stay in this folder, marked by
``GENERATOR.txt``, and are for this bench only. Checks before any training: the ``v3`` arm's
validation set equals the build's byte for byte (the generator is the build's), and the other
arms' sets differ from v3's in watermarked samples only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from label_ab import (  # noqa: E402
    check_control,
    checked_inputs,
    differ_only_where_labelled,
    render_arm,
    sweep_predictions,
    train_arms,
)

from deqa.baselines import synth  # noqa: E402
from deqa.metrics import srcc  # noqa: E402

ARMS = ("v3", "ink", "size")
SWEEPS = ("sweep_watermark", "iso_watermark")


def _size_matched_watermark(img, t, rng):
    return synth.apply_watermark(img, t, rng, size_match=True)


def arm_variant(arm: str) -> dict:
    """The arm's generator, as :func:`label_ab.render_variant`'s keywords."""
    if arm == "size":  # the check in main() confirms the size arm's marks are not v3's
        return {"head": "watermark", "variant": _size_matched_watermark}
    return {"config": {"watermark_ink": arm == "ink"}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="work folder of scripts/build_default_model.sh (protocol v3 sets)")
    ap.add_argument("--cnn", required=True, help="degradation-model folder whose CNN every arm starts from")
    ap.add_argument("--work", required=True, help="folder for the arms' sets and models (resumed when rerun)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--n", type=int, default=30000, help="training crops per arm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch threads and render workers")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if "v3" not in args.arms:
        ap.error("--arms must include v3: the other arms are checked against it")

    build, work = Path(args.build), Path(args.work)
    metas, heads, wm = checked_inputs(build, args.cnn, SWEEPS, "watermark", ap.error)

    sets: dict[str, dict[str, Path]] = {}
    for arm in args.arms:
        root = work / arm
        root.mkdir(parents=True, exist_ok=True)
        (root / "GENERATOR.txt").write_text({
            "v3": "the shipped watermark label (protocol deqa-heldout-v3)\n",
            "ink": "synth --watermark-ink (protocol deqa-heldout-v4)\n",
            "size": "apply_watermark(size_match=True); the meta says v3 but the marks are size-matched: bench only\n",
        }[arm])
        sets[arm] = render_arm(metas, root, SWEEPS, args.n, args.threads, **arm_variant(arm))
    # The v3 arm is the build's generator: its validation draw must be the build's, byte for byte.
    check_control(build, sets["v3"]["val"])
    checks = {}
    for arm in args.arms:
        if arm == "v3":
            continue
        for name in ("val", *SWEEPS):
            _, marked, unmarked = differ_only_where_labelled(sets["v3"][name], sets[arm][name], wm)
            checks[f"{arm} {name}"] = {"marked_differ": marked, "unmarked_differ": unmarked}
            if unmarked or not marked:
                raise SystemExit(f"{arm} {name}: {marked} watermarked and {unmarked} unmarked samples differ from v3's; "
                                 "the arm must change the watermarks and nothing else")
    print("checks", json.dumps(checks), flush=True)

    models, val_loss, cfg = train_arms(sets, args.arms, work, args.cnn, epochs=args.epochs, threads=args.threads,
                                       bench="watermark")

    grading: dict[str, dict[str, float]] = {}
    for model_name, preds in sweep_predictions(models, sets, args.arms, SWEEPS, wm):
        grading[model_name] = {f"{arm} {s}": round(srcc(p, t), 4) for (arm, s), (p, t) in preds.items()}
        print(model_name, json.dumps(grading[model_name]), flush=True)

    print("\nwatermark grading, CNN only (nuisance / isolated), rows: model, columns: marks drawn by")
    print("| model | " + " | ".join(args.arms) + " |")
    print("|---|" + "---|" * len(args.arms))
    for model_name in models:
        g = grading[model_name]
        print(f"| {model_name} | " + " | ".join(f"{g[f'{a} sweep_watermark']:.3f} / {g[f'{a} iso_watermark']:.3f}"
                                                for a in args.arms) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"cnn": args.cnn, "build": str(build), "n": args.n, "epochs": args.epochs,
                                              "checks": checks, "val_loss": val_loss, "grading": grading,
                                              "recipe": dataclasses.asdict(cfg) | {"train_data": None, "val_data": None,
                                                                                   "out_dir": None, "model_id": None}},
                                             indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
