"""``tskd synth ...``: the diffusion model that grows the transfer set, on its own."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="train a diffusion model on a task's images, generate synthetic images",
        description="The synthetic-expansion stage on its own.",
    )
    sub = parser.add_subparsers(dest="synth_command", metavar="SUBCOMMAND")
    _add_train(sub)
    _add_generate(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a diffusion model on every image of a dataset",
        description=(
            "Prepare DATASET and train a diffusion model (diffusers UNet2DModel, DDPM) on all its training images, "
            "labelled and unlabelled. Writes OUT/synthesis/model. Run again to resume."
        ),
    )
    parser.add_argument("--data", required=True, metavar="DATASET", help="dataset folder or manifest")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (a run folder)")
    add_training_options(parser, nproc=True)
    parser.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from tskd.engine import is_main_process
    from tskd.pipeline.run import run_stages

    config = config_from_args(args).replace(synthesis={"enabled": True})
    summary = run_stages(args.data, args.out, config, stages=("data", "synthesis"))
    synthesis = summary["stages"]["synthesis"]
    if is_main_process():
        print(f"diffusion model {synthesis['model_id']} saved in {synthesis['model']}")
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="generate synthetic images with a trained (or pretrained) diffusion model",
        description=(
            "Generate N images with the model in MODEL (a run folder, its synthesis/model folder, or a diffusers "
            "pipeline folder) into OUT/images (NIfTI, normalised intensities; labels in OUT/labels for a joint "
            "model) and a picture OUT/grid.png. Images already in OUT are kept, so an interrupted run resumes."
        ),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="diffusion model or run folder")
    parser.add_argument("--n", required=True, type=int, metavar="N", help="number of images")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image (image i uses seed + i)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--sampler", choices=("ddim", "dpm"), help="sampler (default: the model's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    parser.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from tskd.engine import inference_device
    from tskd.pipeline.generate import (
        generate_to_folder,
        load_any_diffusion_model,
        real_images_near,
    )
    from tskd.progress import ConsoleProgress

    model = load_any_diffusion_model(args.model)
    summary = generate_to_folder(
        model, args.n, args.out, seed=args.seed, steps=args.steps, sampler=args.sampler,
        device=str(inference_device(args.device)), progress=ConsoleProgress(),
        real_images=real_images_near(args.model),
    )
    print(f"{summary['n']} images in {args.out}/images; grid picture: {args.out}/grid.png")
    return 0
