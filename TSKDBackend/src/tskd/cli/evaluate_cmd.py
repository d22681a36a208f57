"""``tskd evaluate``: score predictions against reference labels (a thin parser over
:func:`tskd.evaluation.evaluate.evaluate_files`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

_EPILOG = """\
examples:
  tskd evaluate --pred predictions/ --ref dataset/labels --out eval/
  tskd evaluate --pred case01.seg.nrrd --ref case01_label.nii.gz --no-surface
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, HD95 and ASSD (mm) of predictions against reference labels",
        description="Pair predictions with references by case name (file suffixes do not matter), check that "
        "each pair overlays, and compute per-class Dice, 95th-percentile Hausdorff distance and average "
        "symmetric surface distance in mm (MONAI).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", required=True, type=Path, metavar="FILE_OR_DIR", help="predicted label map(s)")
    parser.add_argument("--ref", required=True, type=Path, metavar="FILE_OR_DIR",
                        help="reference label map(s), or a dataset folder with labels/")
    parser.add_argument("--labels", type=Path, metavar="labels.json",
                        help="label names (labels.json or dataset.json; default: the reference dataset's)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write metrics.csv and metrics.json here")
    parser.add_argument("--no-surface", action="store_true", help="Dice only (skip the slower surface distances)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``tskd evaluate``: a line per case, the summary table, the files written."""
    from tskd.evaluation.evaluate import evaluate_files, format_table

    def report(position: int, total: int, metrics) -> None:
        print(f"[{position}/{total}] {metrics.case_id}: mean Dice {metrics.mean_dice:.3f}", flush=True)

    result = evaluate_files(args.pred, args.ref, labels=args.labels, out=args.out, surface=not args.no_surface,
                            on_case=report)
    print()
    print(format_table(result))
    if result.unmatched_predictions or result.missing_predictions:
        print(f"not scored: {len(result.unmatched_predictions)} prediction(s) without a reference, "
              f"{len(result.missing_predictions)} reference(s) without a prediction (see the warnings above)")
    for path in result.files.values():
        print(f"wrote {path}")
    return 0
