"""Data stage: dataset -> subject-wise split (``split.json``) -> prepared 2D slices (``prepared/``).

Every later stage reads what this stage wrote; nothing is passed in memory between stages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from tskd.atomic import write_json
from tskd.data.cases import Case
from tskd.data.dataset import Dataset, load_dataset
from tskd.data.image import Image
from tskd.data.labels import LabelTable
from tskd.data.prepared import prepare_slices
from tskd.data.slice_dataset import PreparedSlices
from tskd.data.split import subject_split
from tskd.errors import DataError
from tskd.runconfig import PipelineConfig
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.preprocess import NormalizationFitter
from tskd.preprocess.normalization import NormalizationSpec
from tskd.progress import ProgressReporter

if TYPE_CHECKING:
    from tskd.pipeline.update import PreviousRun

__all__ = ["PreparedData", "run_data_stage", "load_prepared_data", "case_reader", "split_cases"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """What the training stages need: the prepared slices and which of them serve what.

    Attributes:
        prepared: the memory-mapped slices of every case of the run.
        labels: the label table (value, name, colour per class; class index = position).
        split: ``{"train": [...], "val": [...], "unlabelled": [...]}`` case ids.
        train_labelled / train_unlabelled / val: slice indices into ``prepared``.
        dataset: the dataset itself (None when loaded from a run folder alone).
    """

    prepared: PreparedSlices
    labels: LabelTable
    split: dict[str, list[str]]
    train_labelled: np.ndarray
    train_unlabelled: np.ndarray
    val: np.ndarray
    dataset: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def normalization(self) -> NormalizationSpec:
        return self.prepared.normalization

    @property
    def slice_axis(self) -> int:
        return self.prepared.slice_axis

    @property
    def input_size(self) -> int:
        return self.prepared.input_size

    def describe(self) -> dict[str, Any]:
        return {
            "cases": {k: len(v) for k, v in self.split.items()},
            "slices": {
                "train_labelled": int(self.train_labelled.size),
                "train_unlabelled": int(self.train_unlabelled.size),
                "val": int(self.val.size),
            },
            "labels": self.labels.to_dict(),
            "slice_axis": self.slice_axis,
            "input_size": self.input_size,
            "normalization": self.normalization.to_dict(),
        }


def case_reader(dataset: Dataset, case_ids: list[str], *, labelled: set[str]) -> Callable[[], Iterator[Any]]:
    """A function returning a fresh generator of ``(case_id, image, class-index label | None)``.

    Labels are mapped from label values to class indices ``0..K-1``; cases not in ``labelled``
    are given without their label.
    """
    table = dataset.label_table

    def generate() -> Iterator[tuple[str, Image, Image | None]]:
        for case_id in case_ids:
            image, label = dataset.read_case(dataset.case(case_id))
            if label is not None and case_id in labelled:
                label = label.with_array(table.to_indices(label.array).astype(np.uint8))
            else:
                label = None
            yield case_id, image, label

    return generate


def split_cases(cases: Sequence[Case], config: PipelineConfig) -> dict[str, list[str]]:
    """The run's split of ``cases``: subject-wise train/validation, at most ``data.max_labelled``
    labelled training cases (the other training labels are dropped, their images join the
    unlabelled ones), and the unlabelled cases of training subjects.

    Args:
        cases: the cases to split (a dataset's cases, or those left after the benchmark holds out
            its test subjects).
        config: ``seed`` and the ``data`` section decide the split.

    Returns:
        ``{"train": [...], "val": [...], "unlabelled": [...]}`` sorted case ids.
    """
    train, val = subject_split(
        [c for c in cases if c.labelled], val_fraction=config.data.val_fraction, seed=config.seed,
        min_val=1 if config.data.val_fraction > 0 else 0,
    )
    train_ids = sorted(c.case_id for c in train)
    unused: list[str] = []
    if config.data.max_labelled is not None and len(train_ids) > config.data.max_labelled:
        order = np.random.default_rng(config.seed).permutation(len(train_ids))
        keep = sorted(train_ids[i] for i in order[: config.data.max_labelled])
        unused = sorted(set(train_ids) - set(keep))
        train_ids = keep
    unlabelled: list[str] = []
    if config.data.use_unlabelled:
        val_subjects = {c.subject_id for c in val}
        unlabelled = [c.case_id for c in cases if not c.labelled and c.subject_id not in val_subjects]
        unlabelled = sorted(unlabelled + unused)  # labels beyond max_labelled are not used
    return {"train": train_ids, "val": sorted(c.case_id for c in val), "unlabelled": unlabelled}


def run_data_stage(
    run: RunFolder, data_path: str, config: PipelineConfig, *, progress: ProgressReporter | None = None,
    previous: PreviousRun | None = None,
) -> PreparedData:
    """Load and check the dataset, split it by subject, and prepare the 2D slices (or reuse them).

    With ``previous`` (an update, :mod:`tskd.pipeline.update`) the label table must be the previous
    run's, the previous subjects keep their side of the split, and the slices are normalised with
    the previous run's statistics (the models it trained expect them).
    """
    dataset = load_dataset(data_path, subject_pattern=config.data.subject_pattern)
    for problem in dataset.problems:
        log = logger.warning if problem.severity == "error" else logger.info
        log("data: %s: %s", problem.path, problem.message)
    table = dataset.label_table
    if table.num_classes < 2:
        raise DataError(f"{data_path}: the labels hold no foreground class; nothing to segment")
    if previous is not None:
        previous.check_labels(table, str(data_path))

    if run.split.is_file():
        split = read_json(run.split)["cases"]
    else:
        if previous is not None:
            from tskd.pipeline.update import update_split

            split = update_split(dataset.cases, previous.split, config)
        else:
            split = split_cases(dataset.cases, config)
        if not split["train"]:
            raise DataError(f"{data_path}: no labelled case is left for training after the validation split")
        write_json(run.split, {"cases": split, "seed": config.seed, "val_fraction": config.data.val_fraction,
                               "subject_pattern": config.data.subject_pattern})
    logger.info(
        "data: %d training, %d validation and %d unlabelled cases; classes: %s",
        len(split["train"]), len(split["val"]), len(split["unlabelled"]), ", ".join(table.names),
    )

    train_set = set(split["train"])
    spec = config.data.prepared
    normalization = None
    if spec.normalization != "none" and previous is not None:
        normalization = previous.normalization
        logger.info("data: intensity normalisation of the previous run %s", normalization.to_dict())
    elif spec.normalization != "none":
        normalization = _fit_on_training_cases(dataset, split["train"], spec.normalization)
    all_ids = split["train"] + split["val"] + split["unlabelled"]
    labelled = train_set | set(split["val"])
    prepared = prepare_slices(
        case_reader(dataset, all_ids, labelled=labelled),
        run.prepared,
        spec,
        normalization=normalization,
        num_classes=table.num_classes,
        progress=progress,
    )
    write_json(run.prepared / "labels.json", table.to_dict())
    selected = _select(prepared, table, split)
    selected.dataset = dataset
    return selected


def _fit_on_training_cases(dataset: Dataset, case_ids: list[str], mode: str) -> NormalizationSpec:
    """Fit the intensity normalisation on the training cases only (never on validation), one
    volume in memory at a time."""
    fitter = NormalizationFitter(mode)
    for case_id in case_ids:
        image, label = dataset.read_case(dataset.case(case_id))
        fitter.add(image.array, label.array if label is not None else None)
    spec = fitter.result()
    logger.info("data: intensity normalisation %s", spec.to_dict())
    return spec


def load_prepared_data(run: RunFolder) -> PreparedData:
    """The data stage's output of an existing run folder."""
    if not run.split.is_file() or not (run.prepared / "labels.json").is_file():
        raise DataError(f"{run.root}: the data stage has not run here yet (no split.json / prepared/)")
    table = LabelTable.from_dict(read_json(run.prepared / "labels.json"))
    return _select(PreparedSlices(run.prepared), table, read_json(run.split)["cases"])


def _select(prepared: PreparedSlices, table: LabelTable, split: dict[str, list[str]]) -> PreparedData:
    return PreparedData(
        prepared=prepared,
        labels=table,
        split=split,
        train_labelled=prepared.indices(case_ids=split["train"], labelled=True),
        train_unlabelled=np.concatenate(
            [prepared.indices(case_ids=split["unlabelled"]), prepared.indices(case_ids=split["train"], labelled=False)]
        ).astype(np.int64),
        val=prepared.indices(case_ids=split["val"], labelled=True),
    )
