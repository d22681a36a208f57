"""``tskd benchmark``: TS-KD against its ablation and the paper's baselines on one dataset."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tskd.cli.common import add_training_options
from tskd.cli.teacher_cmd import BASE_HELP

__all__ = ["register"]

ALL_METHODS = "tskd,tskd_no_synth,labelled_only,task_agnostic_kd,mae"

DESCRIPTION = """\
Train every method on the same split of DATASET with N labelled training cases, evaluate each exported
student on held-out TEST cases at full resolution, and write a table (markdown, CSV, JSON) and a plot:
  tskd              TS-KD: fine-tuned teacher, transfer set with synthetic images, distil, fine-tune
  tskd_no_synth     the same without synthetic images (ablation)
  labelled_only     the student trained on the labelled cases only (distill + fine-tune steps)
  task_agnostic_kd  the student's encoder mimics the frozen foundation model's embeddings, then fine-tune
  mae               MAE-pretrained ViT student (a U-Net student config switches to vit_tiny), then fine-tune
A share of the labelled subjects (--test-fraction) is held out as the test set and never used for
training or model selection. The rest of the training cases' images join as unlabelled images.
Run the same command again to resume; finished methods are not trained again. A failing method
does not stop the others: its error goes into the table.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="compare TS-KD with its ablation and baselines on held-out test cases",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DATASET", help="dataset folder or manifest")
    parser.add_argument("--labelled", required=True, type=int, metavar="N",
                        help="labelled training cases every method gets")
    parser.add_argument("--base", metavar="CHECKPOINT", help=BASE_HELP)
    parser.add_argument("--methods", default=ALL_METHODS, help=f"comma-separated methods (default: {ALL_METHODS})")
    parser.add_argument("--out", metavar="DIR", help="benchmark folder (default: benchmark-<dataset>-<N>)")
    parser.add_argument("--subject-pattern", metavar="REGEX",
                        help="regular expression whose first group is the subject id in a case name")
    parser.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                        help="share of the labelled subjects held out as the test set (default: 0.2)")
    parser.add_argument("--timing-threads", type=int, metavar="T",
                        help="onnxruntime threads for the time per slice (default: the physical cores)")
    parser.add_argument("--cancel-file", metavar="PATH",
                        help="stop cleanly (checkpoint saved, exit code 130) when this file appears")
    add_training_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tskd.pipeline.comparison import TimingSettings, run_benchmark
    from tskd.runconfig import resolve_config
    from tskd.pipeline.comparison.methods import parse_methods

    methods = parse_methods(args.methods)
    data: dict = {"max_labelled": args.labelled}
    if args.subject_pattern:
        data["subject_pattern"] = args.subject_pattern
    config = resolve_config(preset=args.preset, config_file=args.config, overrides={"data": data},
                            max_steps=args.max_steps, input_size=args.input_size, seed=args.seed, base=args.base)
    out = args.out or f"benchmark-{Path(args.data).resolve().name}-{args.labelled}"
    result = run_benchmark(args.data, out, config, methods=methods, test_fraction=args.test_fraction,
                           timing=TimingSettings(threads=args.timing_threads), cancel_file=args.cancel_file,
                           command="tskd " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["benchmark"] else None)
    print(result["markdown"])
    failed = [r["method"] for r in result["results"] if r["status"] != "done"]
    print(f"\nresults: {result['files']['markdown']}, .csv, .json, .png"
          + (f"; FAILED: {', '.join(failed)} (see the table)" if failed else ""))
    return 1 if failed else 0
