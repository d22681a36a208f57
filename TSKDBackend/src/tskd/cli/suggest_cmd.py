"""``tskd suggest``: what to label next (a thin parser over :func:`tskd.suggest.suggest`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]

_EPILOG = """\
examples:
  tskd suggest --model runs/liver --data liver_data/
  tskd suggest --model runs/liver --data new_scans/ --top 20 --max-per-case 2 --json next.json
  tskd suggest --model runs/liver --data liver_data/ --no-teacher --include-labelled
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``suggest`` command."""
    parser = subparsers.add_parser(
        "suggest",
        help="rank the unlabelled slices and cases most worth labelling next",
        description="Score every slice of the dataset's unlabelled cases with the run's student (its mean "
        "normalised entropy) and, when the run has a trained teacher, the teacher-student disagreement "
        "(total-variation distance of their class probabilities); print the slices to label next, at most a few per case and spread out "
        "(a chosen slice lowers its neighbours' scores), and the cases ranked by the mean of their best slices.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, metavar="RUN",
                        help="a run folder (or a student package / .tskd.zip: student entropy only)")
    parser.add_argument("--data", required=True, type=Path, metavar="DATASET",
                        help="a dataset folder or manifest (its unlabelled cases), or a folder of images")
    parser.add_argument("--top", type=int, metavar="N", help="number of suggested slices (default: 10)")
    parser.add_argument("--max-per-case", type=int, metavar="M", help="at most M slices per case (default: 3)")
    parser.add_argument("--no-teacher", action="store_true",
                        help="score with the student alone even when the run has a teacher")
    parser.add_argument("--include-labelled", action="store_true", help="rank the labelled cases too")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the suggestions and case scores here")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for the student")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (default) or cuda")
    parser.set_defaults(func=run_suggest)


def run_suggest(args: argparse.Namespace) -> int:
    """Handler of ``tskd suggest``: the ranked table, and the JSON file when asked."""
    from tskd.errors import ConfigError
    from tskd.suggest import SuggestConfig, format_suggestions, suggest, write_suggestions

    options = {"top": args.top, "max_per_case": args.max_per_case}
    settings = {key: value for key, value in options.items() if value is not None}
    for key, value in settings.items():
        if value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    config = SuggestConfig.from_dict(settings, source="tskd suggest")
    if args.json is not None and args.json.is_dir():
        raise ConfigError(f"--json {args.json}: is a folder; give a file name such as {args.json / 'suggestions.json'}")

    def report(position: int, total: int, case_id: str) -> None:
        print(f"[{position}/{total}] scored {case_id}", file=sys.stderr, flush=True)

    result = suggest(args.model, args.data, config=config, use_teacher=not args.no_teacher,
                     include_labelled=args.include_labelled, threads=args.threads, device=args.device,
                     on_case=report)
    print(format_suggestions(result))
    if args.json is not None:
        try:
            write_suggestions(result, args.json)
        except OSError as exc:
            raise ConfigError(f"--json {args.json}: cannot be written ({exc.strerror or exc}); choose another file") from None
        print(f"wrote {args.json}")
    return 0
