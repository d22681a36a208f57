"""A whole TS-KD run whose student sees each slice between its neighbours (``data.prepared.context_slices``):
the teacher still sees single slices, the transfer set's real slices reach the student stacked and its
synthetic images (which have no neighbours) repeated, feature KD embeds the middle slice, and the
exported package segments a volume with the neighbours the runtime gathers."""

from __future__ import annotations

import numpy as np

from tskd.data.image import read_image
from tskd.data.transfer_set import TransferSetDataset
from tskd.pipeline.data_stage import load_prepared_data
from tskd.pipeline.run import run_stages
from tskd.pipeline.run_folder import RunFolder
from tskd.progress import NullProgress
from tskd.runconfig import resolve_config
from tskd.runtime import OnnxSegmenter, StudentPackage, segment_volume
from tskd.student.storage import load_student


def test_a_run_with_neighbouring_slices(phantom_dataset, tmp_path):
    steps = {"warmup_steps": 0, "validate_every": 10, "checkpoint_every": 10}
    config = resolve_config(preset="tiny", base="none", input_size=32, overrides={
        "data": {"prepared": {"context_slices": 1}},
        "teacher": {"train": {"max_steps": 10, **steps}},
        "synthesis": {"enabled": True, "num_synthetic": 4, "train": {"max_steps": 2, **steps},
                      "gate": {"duplicate_threshold": None, "min_std": 0.0, "max_saturated_fraction": 1.0,
                               "max_entropy": None}},  # every synthetic image joins the transfer set
        "distill": {"w_feat": 0.5, "train": {"max_steps": 10, **steps}},
        "finetune": {"train": {"max_steps": 10, **steps}},
    })
    run = tmp_path / "run"
    summary = run_stages(phantom_dataset, run, config, progress=NullProgress())

    data = load_prepared_data(RunFolder(run))
    assert data.prepared.context_slices == 1 and data.prepared.channels == 3
    for stage in ("distill", "finetune", "reference"):
        assert load_student(run / "student" / stage / "student.pt").in_channels == 3
    transfer = TransferSetDataset(run / "transfer_set", prepared=data.prepared)
    sources = [transfer.transfer_set.provenance(i)["source"] for i in range(len(transfer))]
    real = sources.index("real_labelled")
    item = transfer[real]
    assert item["image"].shape == (3, 32, 32)
    where = {(s["case_id"], s["slice_index"]): i for i, s in enumerate(data.prepared.slices)}
    provenance = transfer.transfer_set.provenance(real)
    np.testing.assert_allclose(item["image"].numpy(),
                               data.prepared.stacked([where[(provenance["case_id"], provenance["slice_index"])]])[0])
    synthetic = transfer[sources.index("synthetic")]["image"]
    assert synthetic.shape == (3, 32, 32) and bool((synthetic[0] == synthetic[2]).all())

    package = StudentPackage.load(run / "package")
    assert package.context_slices == 1 and summary["chosen"] in ("distilled", "reference")
    case = next(iter(sorted((phantom_dataset / "images").glob("*.nii.gz"))))
    image = read_image(case)
    labels = segment_volume(OnnxSegmenter(package, threads=1), image.array)
    assert labels.shape == image.array.shape
