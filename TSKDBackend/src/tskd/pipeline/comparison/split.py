"""The benchmark's split: a held-out test set of subjects, then the usual run split of the rest.

A fixed fraction of the labelled subjects (drawn with the run seed) is the *test* set: never
prepared, never seen by a teacher, a diffusion model or a student, never used for model
selection. The remaining cases are split exactly as ``tskd train`` splits a dataset
(:func:`tskd.pipeline.data_stage.split_cases`: subject-wise validation, ``data.max_labelled``
labelled training cases, the other training images as unlabelled). Every method of a benchmark
uses this one split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tskd.atomic import write_json
from tskd.data.dataset import Dataset
from tskd.data.split import subject_split
from tskd.errors import ConfigError, DataError
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import split_cases
from tskd.pipeline.run_folder import read_json

__all__ = ["benchmark_split", "load_or_make_split", "run_split_file"]


def benchmark_split(dataset: Dataset, config: PipelineConfig, *, test_fraction: float) -> dict[str, list[str]]:
    """``{"train", "val", "unlabelled", "test"}`` case ids (sorted).

    Args:
        dataset: the whole dataset.
        config: ``seed`` and the ``data`` section (``val_fraction``, ``max_labelled``, ``use_unlabelled``).
        test_fraction: share of the labelled subjects held out as the test set, in ``(0, 1)``.

    Raises:
        ValueError: ``test_fraction`` outside ``(0, 1)``.
        DataError: too few subjects for a test set, a validation set and training.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rest, test = subject_split(dataset.cases, val_fraction=test_fraction, seed=config.seed, min_val=1)
    split = split_cases(rest, config)
    if not split["train"]:
        raise DataError(f"{dataset.root}: no labelled case is left for training after holding out the test "
                        "and validation subjects; lower --test-fraction or add labelled cases")
    return {**split, "test": sorted(c.case_id for c in test)}


def _identity(config: PipelineConfig, test_fraction: float) -> dict[str, Any]:
    return {"seed": config.seed, "test_fraction": test_fraction, "val_fraction": config.data.val_fraction,
            "max_labelled": config.data.max_labelled, "use_unlabelled": config.data.use_unlabelled,
            "subject_pattern": config.data.subject_pattern}


def load_or_make_split(path: Path, dataset: Dataset, config: PipelineConfig, *, test_fraction: float) -> dict[str, list[str]]:
    """The split saved at ``path``, or a new one saved there; a saved split drawn with other
    settings is refused (resuming a benchmark must not change its test set)."""
    identity = _identity(config, test_fraction)
    if path.is_file():
        saved = read_json(path)
        differ = sorted(k for k in identity if saved.get("settings", {}).get(k) != identity[k])
        if differ:
            raise ConfigError(
                f"{path} holds a benchmark split made with other settings ({', '.join(differ)}); run again with "
                "the same settings to resume it, or choose a new --out folder"
            )
        return saved["cases"]
    split = benchmark_split(dataset, config, test_fraction=test_fraction)
    write_json(path, {"cases": split, "settings": identity,
                      "counts": {k: len(v) for k, v in split.items()}})
    return split


def run_split_file(split: dict[str, list[str]], config: PipelineConfig) -> dict[str, Any]:
    """What a method's run folder gets as ``split.json``: the split without the test cases."""
    return {"cases": {k: split[k] for k in ("train", "val", "unlabelled")}, "seed": config.seed,
            "val_fraction": config.data.val_fraction, "subject_pattern": config.data.subject_pattern,
            "test_cases_held_out": len(split["test"])}
