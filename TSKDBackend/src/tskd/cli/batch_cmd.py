"""``tskd batch JOBS.yaml``: train many datasets/tasks in one command (see docs/distributed.md)."""

from __future__ import annotations

import argparse

__all__ = ["register"]

DESCRIPTION = """\
Run 'tskd train' for every task of JOBS.yaml, one after the other, each in its own process and run
folder (OUTPUT_ROOT/NAME or the task's 'out'). The whole file is checked first. A finished task is
skipped, a half-finished one resumes, a failing one is recorded and the others still run. A table
of the outcomes is printed and written to batch_summary.json / batch_summary.md.
Exit code: 0 when every task is done (or was already), 1 when any failed, 130 when stopped.

JOBS.yaml:
  output_root: runs            # run folders: runs/NAME
  defaults: {preset: gpu}      # fields given to every task
  tasks:
    - {name: liver, data: /data/liver, base: sam_vit_b_01ec64.pth, nproc: 4}
    - {name: hippo, data: /data/hippo, subject_pattern: '^(hippocampus_\\d+)', config: {distill: {train: {max_steps: 5000}}}}
Task fields: name, data, out, preset, config, config_file, base, subject_pattern, max_steps,
input_size, seed, nproc.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch", help="train many datasets/tasks listed in a YAML file, one after the other",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("jobs", metavar="JOBS.yaml", help="the batch file")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="run only this task (repeat for several)")
    parser.add_argument("--dry-run", action="store_true", help="check the file and show the plan; train nothing")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tskd.errors import ConfigError
    from tskd.pipeline.batch import format_batch_table, run_batch, task_state, write_batch_summary
    from tskd.pipeline.batch_config import load_batch_file

    items, summary_dir = load_batch_file(args.jobs)
    if args.only:
        names = {item.name for item in items}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise ConfigError(f"--only {', '.join(unknown)}: no such task in {args.jobs}; tasks: {', '.join(sorted(names))}")
        items = [item for item in items if item.name in args.only]
    if args.dry_run:
        for position, item in enumerate(items, start=1):
            nproc = f", {item.task.nproc} processes" if item.task.nproc and item.task.nproc > 1 else ""
            print(f"[{position}/{len(items)}] {item.name}: {task_state(item)}; data {item.task.data} -> {item.out} "
                  f"(preset {item.task.preset}{nproc})")
        return 0

    def on_start(position, item, state):
        word = {"done": "already done, skipping", "resume": "resuming", "new": "starting",
                "conflict": "starting (its folder holds other settings)"}[state]
        print(f"[{position}/{len(items)}] {item.name}: {word} (output: {item.out / 'batch.log'})", flush=True)

    def on_done(position, outcome):
        if outcome.status not in ("skipped", "not run"):
            extra = f": {outcome.error}" if outcome.error else ""
            print(f"[{position}/{len(items)}] {outcome.name}: {outcome.status} in {outcome.seconds:.0f} s{extra}",
                  flush=True)

    outcomes = run_batch(items, on_start=on_start, on_done=on_done)
    json_path, _ = write_batch_summary(outcomes, summary_dir, batch_file=args.jobs)
    print()
    print(format_batch_table(outcomes))
    print(f"summary: {json_path} and {json_path.with_suffix('.md')}")
    statuses = {o.status for o in outcomes}
    if statuses & {"stopped", "not run"}:
        return 130
    return 1 if "failed" in statuses else 0
