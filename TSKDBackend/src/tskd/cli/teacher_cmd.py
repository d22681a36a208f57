"""``tskd teacher ...``: fine-tune the foundation model on a task, predict with it."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args

__all__ = ["register"]

BASE_HELP = (
    "foundation checkpoint: a name from 'tskd foundation list' (litemedsam, medsam-vit-b, sam-vit-b, ...) in the "
    "weights cache; 'auto': the best one present (teacher on the CPU: LiteMedSAM first; on a GPU: MedSAM first; "
    "none present: from scratch); or a path: Meta's sam_vit_b/l/h_*.pth, medsam_vit_b.pth, lite_medsam.pth, a "
    "Hugging Face SAM folder or a .safetensors file; 'none' trains a "
    "small SAM-layout model from scratch (no foundation weights)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teacher",
        help="fine-tune SAM/MedSAM on a task (the TS-KD teacher)",
        description="The teacher stage on its own: fine-tune a foundation model with LoRA, predict with it.",
    )
    sub = parser.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND")
    _add_finetune(sub)
    _add_predict(sub)
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


def _add_predict(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict",
        help="segment images or volumes with a fine-tuned teacher",
        description=(
            "Segment INPUT (an image, a volume, a DICOM folder, or a folder of them) with the teacher of a run and "
            "write label maps aligned with their inputs (same geometry). The teacher repeats the run's preprocessing."
        ),
    )
    parser.add_argument("--teacher", required=True, metavar="DIR", help="run folder or its teacher/ folder")
    parser.add_argument("--input", required=True, metavar="IMAGE_OR_FOLDER", help="what to segment")
    parser.add_argument("--output", required=True, metavar="SEG", help="output file (one input) or folder")
    parser.add_argument("--format", default="same", choices=("same", "nii.gz", "nrrd", "seg.nrrd"),
                        help="output format (default: the input's; seg.nrrd has named, coloured segments)")
    parser.add_argument("--base", metavar="CHECKPOINT", help="the foundation checkpoint, if it moved since training")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default: 8)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    parser.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from tskd.inference.predict import predict_files
    from tskd.inference.teacher_model import load_teacher_slice_model

    model = load_teacher_slice_model(args.teacher, base=args.base, device=args.device)
    results = predict_files(model, args.input, args.output, format=args.format, batch_size=args.batch_size)
    for result in results:
        print(f"{'ok    ' if result.ok else 'FAILED'} {result.input} -> {result.output or result.error}")
    return 0 if all(r.ok for r in results) else 1
