"""``tskd predict``: segment images with a trained student (a thin parser over
:func:`tskd.inference.predict_files`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "FORMATS", "BACKENDS"]

# the same as tskd.inference.predict's (a test checks); repeated so 'tskd --help' imports nothing heavy
FORMATS = ("same", "nii.gz", "nrrd", "seg.nrrd")
BACKENDS = ("onnx", "torch")

_EPILOG = """\
examples:
  tskd predict --model runs/liver --input ct/ --output predictions/
  tskd predict --model liver.tskd.zip --input case01.nii.gz --output case01_seg.seg.nrrd
  tskd predict --model runs/liver --input dicom/series1 --output out/ --format seg.nrrd --roi 20:80,:,:
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` command."""
    parser = subparsers.add_parser(
        "predict",
        help="segment images with a trained student package",
        description="Segment every image of INPUT (a file, a DICOM series folder or a folder of images) "
        "with a student package and write label maps aligned with their images. Inputs that cannot be "
        "read are reported and skipped (exit status 1 at the end); input files are never overwritten.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, metavar="RUN_OR_PACKAGE",
                        help="a run folder, a package folder or a .tskd.zip")
    parser.add_argument("--input", required=True, type=Path, metavar="FILE_OR_FOLDER", help="image(s) to segment")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE_OR_FOLDER",
                        help="output folder, or a file name for a single input")
    parser.add_argument("--format", choices=FORMATS, default="same",
                        help="label map format (default: same as the input; DICOM gives .nii.gz)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="slices per model call (default: 16)")
    parser.add_argument("--backend", choices=BACKENDS, default="onnx",
                        help="onnx (onnxruntime, default) or torch (the package's student.pt)")
    parser.add_argument("--roi", metavar="k0:k1,j0:j1,i0:i1",
                        help="segment only this box (numpy index bounds; empty sides mean the whole axis)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (default) or cuda (when onnxruntime / torch has CUDA here)")
    parser.add_argument("--no-postprocessing", action="store_true",
                        help="write the raw arg-max label maps, without the package's post-processing "
                             "(keep the largest connected component, when its export chose it on validation)")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``tskd predict``: one line per case, a summary, exit 1 when any input failed."""
    from tskd.inference.predict import load_slice_model, parse_roi, predict_files

    roi = parse_roi(args.roi)
    model = load_slice_model(args.model, backend=args.backend, threads=args.threads, device=args.device)

    def report(position: int, total: int, result) -> None:
        prefix = f"[{position}/{total}] {result.input.name}"
        if result.ok:
            shape = "x".join(str(n) for n in result.shape)
            print(f"{prefix} -> {result.output} ({shape}, {result.seconds:.1f} s)", flush=True)
        else:
            print(f"{prefix}: skipped: {result.error}", flush=True)

    results = predict_files(model, args.input, args.output, format=args.format, batch_size=args.batch_size,
                            roi=roi, on_result=report, postprocessing="none" if args.no_postprocessing else None)
    failed = [r for r in results if not r.ok]
    print(f"segmented {len(results) - len(failed)} of {len(results)} inputs")
    if failed:
        print(f"tskd: error: {len(failed)} input(s) could not be segmented: "
              + ", ".join(r.input.name for r in failed), file=sys.stderr)
        return 1
    return 0
