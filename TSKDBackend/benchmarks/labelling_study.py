"""Issue 18's proof: a simulated labelling study (random vs suggested next cases; full retrain vs
the fast update), see :mod:`tskd.pipeline.comparison.labelling` for the arms.

The test subjects are held out as ``tskd benchmark`` holds them out (same seed, same fraction);
the other labelled cases are the pool. Round 0 labels ``--rounds``' first count of pool cases at
random (the same cases for every arm); each later round adds cases up to the next count. After
each run: test Dice on the held-out subjects (:func:`tskd.pipeline.comparison.measure.test_metrics`,
the benchmark's scoring), wall time and training steps. The JSON is rewritten (atomically) after
every run, so a killed study keeps what it had and the same command resumes it.

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/labelling_study.py \\
        --data ../shared/data/hc18 --subject-pattern '^(\\d{3})' --rounds 10,20,40,80 \\
        --preset cpu-small --base none --work ../labelling_study_hc18

Round datasets and run folders go under ``--work`` (keep it outside the repository, on the data's
file system: the round datasets are hard links).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

logger = logging.getLogger("tskd.benchmarks.labelling_study")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from tskd.cli.common import add_training_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a fully labelled dataset folder or manifest")
    parser.add_argument("--rounds", required=True, help="labelled counts per round, e.g. 10,20,40,80")
    parser.add_argument("--arms", default="random,suggested,suggested_update",
                        help="which arms to run (default: all three)")
    parser.add_argument("--subject-pattern", metavar="REGEX", help="first group: the subject id in a case name")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of the subjects (default 0.2)")
    parser.add_argument("--base", default="none", help="the teacher's foundation checkpoint, or none (default)")
    parser.add_argument("--no-teacher", action="store_true", help="suggest with the student's entropy only")
    parser.add_argument("--work", help="round datasets and run folders (default: labelling-study-<dataset>)")
    parser.add_argument("--results", help="the JSON (default: benchmarks/results/labelling_study_<dataset>.json)")
    add_training_options(parser)
    return parser.parse_args(argv)


def _steps(run_root: Path, reused_synthesis: bool) -> tuple[int, dict[str, int]]:
    """Training steps per stage from the stages' ``stage.json``; a synthesis stage copied from the
    previous run (an update) is listed but not counted."""
    from tskd.pipeline.run_folder import read_json

    steps: dict[str, int] = {}
    for name in ("teacher", "synthesis", "student/mae", "student/distill", "student/finetune", "student/reference"):
        path = run_root / name / "stage.json"
        if path.is_file():
            value = read_json(path).get("steps")
            if isinstance(value, int):
                steps[name] = value
    total = sum(v for k, v in steps.items() if not (k == "synthesis" and reused_synthesis))
    return total, steps


def _train_and_score(data_dir: Path, run_root: Path, config, dataset, test_ids: list[str]) -> dict[str, Any]:
    from tskd.pipeline.comparison.measure import test_metrics
    from tskd.pipeline.run import run_stages
    from tskd.pipeline.run_folder import RunFolder
    from tskd.runtime import OnnxSegmenter

    started = time.perf_counter()
    run_stages(str(data_dir), run_root, config)
    wall = time.perf_counter() - started
    test = test_metrics(OnnxSegmenter(RunFolder(run_root).package), dataset, test_ids)
    total, per_stage = _steps(run_root, bool(config.update.from_run) and config.update.reuse_synthesis)
    return {"test_dice": test["mean_dice"], "dice_sd": test["dice_sd"],
            "per_class": {k: v.get("dice") for k, v in test["per_class"].items()},
            "wall_s": round(wall, 1), "steps": total, "stage_steps": per_stage, "run": str(run_root)}


def _next_cases(arm: str, r: int, counts: list[int], study, pool: list[str], work: Path, seed: int,
                use_teacher: bool) -> tuple[list[str], dict[str, Any]]:
    """The cases ``arm`` has labelled in round ``r`` (saved in the study file once chosen)."""
    from tskd.pipeline.comparison.labelling import choose_random, choose_suggested, initial_cases
    from tskd.suggest import suggest

    saved = study.labelled(arm, r)
    if saved is not None:
        return saved, {}
    note: dict[str, Any] = {}
    if r == 0:
        chosen = initial_cases(pool, counts[0], seed)
    elif arm == "random":
        before = study.labelled(arm, r - 1)
        chosen = before + choose_random(pool, before, counts[r] - counts[r - 1], seed=seed, round_index=r)
    else:  # suggested: rank the previous round's unlabelled pool with the previous round's run
        before = study.labelled(arm, r - 1)
        result = suggest(work / "runs" / arm / f"round{r - 1}", work / "datasets" / arm / f"round{r - 1}",
                         use_teacher=use_teacher)
        ranking = [c.case_id for c in result.cases]
        chosen = before + choose_suggested(ranking, before, counts[r] - counts[r - 1])
        note = {"suggest_seconds": round(result.seconds, 1), "teacher": result.teacher_note}
    study.set_labelled(arm, r, chosen)
    return chosen, note


def main(argv: list[str] | None = None) -> int:
    from tskd.data.dataset import load_dataset
    from tskd.data.split import subject_split
    from tskd.errors import TSKDError
    from tskd.log import configure_logging
    from tskd.pipeline.comparison.labelling import (ARMS, StudyResults, format_table, plan_rounds, plot_study,
                                                    write_round_dataset)
    from tskd.runconfig import resolve_config

    args = _parse(argv)
    configure_logging()
    name = Path(args.data).resolve().name
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    try:
        bad = [a for a in arms if a not in ARMS]
        if bad or not arms:
            raise ValueError(f"--arms: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(ARMS)}")
        if "suggested_update" in arms and "suggested" not in arms:
            raise ValueError("--arms: suggested_update trains the suggested arm's cases; add suggested")
        data: dict[str, Any] = {"max_labelled": None}
        if args.subject_pattern:
            data["subject_pattern"] = args.subject_pattern
        config = resolve_config(preset=args.preset, config_file=args.config, overrides={"data": data},
                                max_steps=args.max_steps, input_size=args.input_size, seed=args.seed, base=args.base)
        dataset = load_dataset(args.data, subject_pattern=config.data.subject_pattern)
        labelled = [c for c in dataset.cases if c.labelled]
        rest, test = subject_split(labelled, val_fraction=args.test_fraction, seed=config.seed, min_val=1)
        pool, test_ids = sorted(c.case_id for c in rest), sorted(c.case_id for c in test)
        counts = plan_rounds([int(x) for x in args.rounds.split(",")], len(pool))
    except (TSKDError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = Path(args.work or f"labelling-study-{name}").resolve()
    results_path = Path(args.results) if args.results else RESULTS / f"labelling_study_{name}.json"
    settings = {"data": str(Path(args.data).resolve()), "rounds": counts, "seed": config.seed,
                "test_fraction": args.test_fraction, "preset": args.preset, "max_steps": args.max_steps,
                "subject_pattern": config.data.subject_pattern, "base": args.base, "no_teacher": args.no_teacher}
    try:
        study = StudyResults(results_path, settings)
    except TSKDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    study.data["split"] = {"pool": len(pool), "test": test_ids}
    study.data["command"] = "python " + " ".join([str(Path(__file__).name)] + (argv or sys.argv[1:]))
    study.save()
    png = results_path.with_suffix(".png")
    title = f"{name}: test Dice on {len(test_ids)} held-out cases"
    for r, count in enumerate(counts):
        for arm in arms:
            if study.record(arm, r) is not None:
                logger.info("study: round %d (%d labelled) %s: done earlier, not run again", r, count, arm)
                continue
            source = "suggested" if arm == "suggested_update" else arm
            cases, note = _next_cases(source, r, counts, study, pool, work, config.seed, not args.no_teacher)
            data_dir = write_round_dataset(dataset.cases, cases, pool, work / "datasets" / source / f"round{r}")
            entry = {"arm": arm, "round": r, "labelled": count, "added": cases[counts[r - 1]:] if r else cases, **note}
            if arm == "suggested_update" and r == 0:  # nothing to update from yet: the suggested arm's run
                entry.update({k: v for k, v in study.record("suggested", 0).items()
                              if k not in ("arm", "round", "labelled", "added")})
                entry["note"] = "round 0: the suggested arm's full run (nothing to update from)"
            else:
                run_config = copy.deepcopy(config)
                if arm == "suggested_update":
                    previous = "suggested" if r == 1 else arm
                    run_config.update.from_run = str(work / "runs" / previous / f"round{r - 1}")
                logger.info("study: round %d (%d labelled) %s: training", r, count, arm)
                entry.update(_train_and_score(data_dir, work / "runs" / arm / f"round{r}", run_config, dataset,
                                              test_ids))
            study.add_record(entry)
            logger.info("study: round %d %s: test Dice %.4f, %.0f s", r, arm, entry["test_dice"], entry["wall_s"])
        plot_study(study.data["records"], png, title=title)
    print(format_table(study.data["records"]))
    print(f"\nresults: {results_path}, plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
