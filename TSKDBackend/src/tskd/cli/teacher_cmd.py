"""``tskd teacher ...``: fine-tune the foundation model on a task, predict with it."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args

__all__ = ["register"]

BASE_HELP = (
    "foundation checkpoint: Meta's sam_vit_b/l/h_*.pth, medsam_vit_b.pth, a Hugging Face SAM folder or a "
    ".safetensors file; 'none' trains a small SAM-layout model from scratch (no foundation weights)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teacher",
        help="fine-tune SAM/MedSAM on a task (the TS-KD teacher)",
        description="The teacher stage on its own: fine-tune a foundation model with LoRA, predict with it.",
    )
    sub = parser.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND")
    _add_finetune(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "finetune",
        help="fine-tune the teacher on a dataset",
        description=(
            "Prepare DATASET (split by subject, slice, normalise) and fine-tune the teacher on it. Everything is "
            "written under OUT (prepared/, teacher/, split.json, config.yaml, log.txt). Run the same command again "
            "to resume after an interruption."
        ),
    )
    parser.add_argument("--data", required=True, metavar="DATASET", help="dataset folder or manifest")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (a run folder)")
    parser.add_argument("--base", metavar="CHECKPOINT", help=BASE_HELP)
    add_training_options(parser, nproc=True)
    parser.set_defaults(func=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from tskd.pipeline.run import run_stages

    from tskd.engine import is_main_process

    config = config_from_args(args)
    summary = run_stages(args.data, args.out, config, stages=("data", "teacher"))
    if not is_main_process():
        return 0
    teacher = summary["stages"]["teacher"]
    print(f"teacher saved in {teacher['folder']}")
    for key, value in teacher["metrics"].items():
        print(f"  {key}: {value:.4f}")
    if not teacher["has_foundation_weights"]:
        print("  note: trained WITHOUT foundation weights (--base none)")
    return 0
