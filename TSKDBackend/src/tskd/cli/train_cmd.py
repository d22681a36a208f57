"""``tskd train``: the whole TS-KD pipeline on a dataset."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args
from tskd.cli.teacher_cmd import BASE_HELP
from tskd.errors import ConfigError

__all__ = ["register"]

DESCRIPTION = """\
Run the whole TS-KD pipeline on DATASET:
  1. teacher    fine-tune the foundation model (SAM/MedSAM + LoRA; --base none: a small SAM from scratch)
  2. synthesis  train a diffusion model on the task's images and grow the transfer set with
                quality-gated synthetic images labelled by the teacher
  3. distill    distil the teacher into the light student on the transfer set
  4. finetune   fine-tune the student on the labelled cases
  5. reference  train the same student on the labelled cases alone (distill + finetune steps;
                off with 'reference: {enabled: false}' in --config)
and export the better of the two students on the validation volumes (ONNX + metadata) for
Slicer; the last line printed says which one and what distillation added. Everything is written
under OUT; if the run stops (Ctrl-C, a crash, a reboot), the same command resumes where it stopped.

--update-from PREVIOUS_RUN updates the model of a finished run with new or corrected labels in
DATASET (a fast retrain): the subjects it saw keep their side of the split, the teacher and the
students start from its weights and train for a fraction of the preset's steps (the preset's
'update' section), its diffusion model and synthetic images are reused (--no-reuse-synthesis:
train and sample again), and OUT/lineage.json records the cases added.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="run the whole pipeline: teacher, synthesis, distillation, fine-tuning, reference, export",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DATASET", help="dataset folder or manifest")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (created, or resumed)")
    parser.add_argument("--base", metavar="CHECKPOINT", help=BASE_HELP)
    parser.add_argument("--cancel-file", metavar="PATH",
                        help="stop cleanly (checkpoint saved, exit code 130) when this file appears")
    parser.add_argument("--update-from", metavar="PREVIOUS_RUN",
                        help="update the model of this finished run folder with DATASET's new labels (short "
                             "schedule, warm start); OUT must be a new folder")
    parser.add_argument("--no-reuse-synthesis", action="store_true",
                        help="with --update-from: train a new diffusion model and sample new synthetic images")
    add_training_options(parser, nproc=True)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tskd.data.dataset import dataset_path

    update: dict = {}
    if args.update_from:
        update["from_run"] = args.update_from
    if args.no_reuse_synthesis:
        if not args.update_from:
            raise ConfigError("--no-reuse-synthesis only applies with --update-from PREVIOUS_RUN")
        update["reuse_synthesis"] = False
    config = config_from_args(args, {"update": update} if update else None)
    dataset_path(args.data)  # a wrong path or previous run is told at once, before the pipeline's imports
    if config.update.from_run:
        from tskd.pipeline.update import load_previous_run

        load_previous_run(config.update.from_run, config)
    # the pipeline (torch, MONAI: seconds to import) once the settings are known to be valid
    from tskd.engine import is_main_process
    from tskd.pipeline.run import format_summary, run_stages

    summary = run_stages(args.data, args.out, config, cancel_file=args.cancel_file)
    if is_main_process():
        print(format_summary(summary))
    return 0
