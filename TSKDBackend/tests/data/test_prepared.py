from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from tskd.data import prepared as prepared_module
from tskd.data.augment import AugmentConfig, build_augmentation
from tskd.data.image import Geometry, Image
from tskd.data.phantom import PhantomConfig, make_phantom
from tskd.data.prepared import PreparedSlices, PreparedSpec, SliceDataset, prepare_slices
from tskd.errors import ConfigError, DataError
from tskd.preprocess import NormalizationSpec, apply_normalization, resize_bilinear, resize_nearest

SMALL = PhantomConfig(size=(40, 32, 12), spacing=(1.0, 1.0, 2.5))


def _cases(n=3, unlabelled=1, config=SMALL):
    cases = []
    for i in range(n + unlabelled):
        image, label = make_phantom(config, i)
        cases.append((f"case_{i:03d}", image, label if i < n else None))
    return cases


def _foreground_slices(label, min_pixels=1):
    return [k for k in range(label.shape[0]) if (label[k] > 0).sum() >= min_pixels]


def test_files_dtypes_shapes_and_values(tmp_path):
    cases = _cases()
    spec = PreparedSpec(input_size=48, keep_empty_fraction=0.0)
    prepared = prepare_slices(cases, tmp_path / "prep", spec)
    folder = tmp_path / "prep"
    assert sorted(p.name for p in folder.iterdir()) == ["images.npy", "index.json", "labels.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["prep"]  # no temporary folders left

    expected = sum(len(_foreground_slices(c[2].array)) for c in cases[:3]) + cases[3][1].array.shape[0]
    images = np.load(folder / "images.npy")
    labels = np.load(folder / "labels.npy")
    assert images.dtype == np.float16 and images.shape == (expected, 48, 48)
    assert labels.dtype == np.uint8 and labels.shape == (expected, 48, 48)
    assert len(prepared) == expected and prepared.input_size == 48
    assert prepared.slice_axis == 0 and prepared.num_classes == 4
    assert prepared.normalization.mode == "percentile"

    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert index["num_slices"] == expected and len(index["slices"]) == expected
    assert index["spec"]["input_size"] == 48 and index["normalization"]["mode"] == "percentile"
    first = index["slices"][0]
    assert first["case_id"] == "case_000" and first["labelled"] is True and first["shape"] == [32, 40]

    # slice n is the normalised volume's slice, resized (float16 precision)
    case_id, image, label = cases[1]
    n = int(prepared.indices(case_ids=["case_001"])[2])
    k = prepared.slices[n]["slice_index"]
    volume = apply_normalization(image.array, prepared.normalization)
    np.testing.assert_allclose(images[n], resize_bilinear(volume[k], (48, 48)), atol=2e-3, rtol=2e-3)
    np.testing.assert_array_equal(labels[n], resize_nearest(label.array[k], (48, 48)))
    assert set(np.unique(labels[prepared.indices(labelled=True)])) <= {0, 1, 2, 3}


def test_unlabelled_slices_and_dataset_items(tmp_path):
    prepared = prepare_slices(_cases(2, 1), tmp_path / "prep", PreparedSpec(input_size=32))
    unlabelled = prepared.indices(labelled=False)
    assert len(unlabelled) == 12  # every slice of the unlabelled volume
    assert (prepared.labels[unlabelled] == 255).all()
    assert set(prepared.indices(case_ids=["case_002"])) == set(unlabelled)
    assert len(prepared.indices(labelled=True)) + len(unlabelled) == len(prepared)
    with pytest.raises(ValueError, match="unknown case"):
        prepared.indices(case_ids=["nope"])

    dataset = SliceDataset(prepared, np.concatenate([prepared.indices(labelled=True)[:2], unlabelled[:1]]))
    assert len(dataset) == 3
    item = dataset[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 32, 32)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (32, 32)
    assert item["labelled"].dtype == torch.bool and bool(item["labelled"])
    assert item["index"] == int(prepared.indices(labelled=True)[0])
    np.testing.assert_array_equal(item["image"][0].numpy(), prepared.images[item["index"]].astype(np.float32))
    item = dataset[2]
    assert not bool(item["labelled"]) and int(item["label"].abs().sum()) == 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=3)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 1, 32, 32) and batch["label"].shape == (3, 32, 32)
    assert batch["labelled"].tolist() == [True, True, False]


def test_fingerprint_reuse_and_rebuild(tmp_path, monkeypatch):
    cases = _cases(2, 0)
    spec = PreparedSpec(input_size=32)
    first = prepare_slices(cases, tmp_path / "prep", spec)
    stamp = (tmp_path / "prep" / "images.npy").stat().st_mtime_ns

    real = prepared_module.np.lib.format.open_memmap

    def no_writes(*args, mode="r+", **kwargs):
        assert mode == "r", "a matching folder must be reused, not rewritten"
        return real(*args, mode=mode, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(prepared_module.np.lib.format, "open_memmap", no_writes)
        again = prepare_slices(list(cases), tmp_path / "prep", spec)
    assert again.fingerprint == first.fingerprint
    assert (tmp_path / "prep" / "images.npy").stat().st_mtime_ns == stamp

    changed = prepare_slices(cases, tmp_path / "prep", spec.replace(input_size=40))
    assert changed.fingerprint != first.fingerprint and changed.images.shape[1:] == (40, 40)
    edited = [(cid, img.with_array(img.array * 2), lab) for cid, img, lab in cases]
    assert prepare_slices(edited, tmp_path / "prep", spec.replace(input_size=40)).fingerprint != changed.fingerprint
    assert [p.name for p in tmp_path.iterdir()] == ["prep"]


def test_interrupted_run_leaves_nothing_half_written(tmp_path):
    cases = _cases(3, 0)

    def stop_after_first(event):
        assert event.stage == "prepare" and event.total == 3
        if event.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_slices(cases, tmp_path / "prep", PreparedSpec(input_size=32), progress=stop_after_first)
    assert list(tmp_path.iterdir()) == []

    # an interrupted rebuild keeps the previous complete folder intact
    done = prepare_slices(cases, tmp_path / "prep", PreparedSpec(input_size=32))
    with pytest.raises(KeyboardInterrupt):
        prepare_slices(cases, tmp_path / "prep", PreparedSpec(input_size=24), progress=stop_after_first)
    assert [p.name for p in tmp_path.iterdir()] == ["prep"]
    assert PreparedSlices(tmp_path / "prep").fingerprint == done.fingerprint


def test_streaming_from_a_function_and_empty_fraction(tmp_path):
    reads = []

    def cases():
        for i in range(3):
            reads.append(i)
            image, label = make_phantom(SMALL, i)
            yield f"c{i}", image, label

    none_empty = prepare_slices(cases, tmp_path / "a", PreparedSpec(input_size=24, keep_empty_fraction=0.0))
    assert reads == [0, 1, 2, 0, 1, 2]  # two passes, one volume at a time
    all_kept = prepare_slices(cases, tmp_path / "b", PreparedSpec(input_size=24, keep_empty_fraction=1.0))
    assert len(all_kept) == 36
    expected = sum(len(_foreground_slices(make_phantom(SMALL, i)[1].array)) for i in range(3))
    assert len(none_empty) == expected < 36
    half = prepare_slices(cases, tmp_path / "c", PreparedSpec(input_size=24, keep_empty_fraction=0.5))
    again = prepare_slices(cases, tmp_path / "d", PreparedSpec(input_size=24, keep_empty_fraction=0.5))
    assert half.slices == again.slices  # deterministic choice of empty slices
    assert len(none_empty) <= len(half) <= 36


def test_auto_axis_ct_normalization_and_given_spec(tmp_path):
    config = PhantomConfig(size=(32, 12, 30), spacing=(1.0, 3.0, 1.0), modality="ct")
    cases = _cases(2, 0, config)
    prepared = prepare_slices(cases, tmp_path / "ct", PreparedSpec(input_size=32))
    assert prepared.slice_axis == 1  # the coarse j axis
    assert prepared.slices[0]["shape"] == [30, 32]  # (k, i)
    assert prepared.normalization.mode == "ct"
    assert prepared.normalization.lower > -300 and prepared.normalization.upper < 600

    given = NormalizationSpec(mode="ct", lower=-200.0, upper=300.0, mean=50.0, std=100.0)
    fixed = prepare_slices(cases, tmp_path / "fixed", PreparedSpec(input_size=32, slice_axis=0), normalization=given)
    assert fixed.normalization == given and fixed.slice_axis == 0
    assert float(fixed.images[:].min()) >= -2.5 - 1e-2 and float(fixed.images[:].max()) <= 2.5 + 1e-2


def test_float_and_bool_labels_with_whole_values_are_accepted(tmp_path):
    image, label = make_phantom(SMALL, 0)
    as_float = prepare_slices([("a", image, label.with_array(label.array.astype(np.float32)))], tmp_path / "f")
    as_int = prepare_slices([("a", image, label)], tmp_path / "i")
    np.testing.assert_array_equal(as_float.labels[:], as_int.labels[:])
    as_bool = prepare_slices([("a", image, label.with_array(label.array > 0))], tmp_path / "b")
    assert as_bool.num_classes == 2 and set(np.unique(as_bool.labels[:])) == {0, 1}


def test_2d_images(tmp_path):
    cases = []
    for i in range(3):
        image, label = make_phantom(PhantomConfig(size=(50, 40)), i)
        cases.append((f"img{i}", image, label))
    prepared = prepare_slices(cases, tmp_path / "p", PreparedSpec(input_size=32))
    assert len(prepared) == 3 and [s["slice_index"] for s in prepared.slices] == [0, 0, 0]
    assert prepared.slices[0]["shape"] == [40, 50]


def test_bad_inputs(tmp_path):
    image, label = make_phantom(SMALL, 0)
    wrong = Image(np.zeros((12, 32, 41), np.uint8), Geometry.default((12, 32, 41)))
    with pytest.raises(DataError, match="differs from image shape"):
        prepare_slices([("a", image, wrong)], tmp_path / "p")
    with pytest.raises(DataError, match="appears twice"):
        prepare_slices([("a", image, label), ("a", image, label)], tmp_path / "p")
    floats = label.with_array(label.array.astype(np.float32) + 0.5)
    with pytest.raises(DataError, match="whole numbers"):
        prepare_slices([("a", image, floats)], tmp_path / "p")
    with pytest.raises(DataError, match="num_classes"):
        prepare_slices([("a", image, label)], tmp_path / "p", num_classes=2)
    with pytest.raises(DataError, match="empty"):
        prepare_slices([], tmp_path / "p")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="prepare the slices again"):
        PreparedSlices(tmp_path)


def test_prepared_slices_pickle_reopens_memory_maps(tmp_path):
    prepared = prepare_slices(_cases(1, 0), tmp_path / "p", PreparedSpec(input_size=24))
    clone = pickle.loads(pickle.dumps(prepared))
    assert isinstance(clone.images, np.memmap)
    np.testing.assert_array_equal(clone.labels[:], prepared.labels[:])
    assert len(pickle.dumps(prepared)) < 100_000  # the arrays are not copied into the pickle


def test_dataset_augmentation_is_reproducible_per_epoch(tmp_path):
    prepared = prepare_slices(_cases(2, 0), tmp_path / "p", PreparedSpec(input_size=32))
    augment = build_augmentation(AugmentConfig(affine_prob=1.0))
    a = SliceDataset(prepared, augment=augment, seed=5)
    b = SliceDataset(prepared, augment=build_augmentation(AugmentConfig(affine_prob=1.0)), seed=5)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in (0, 4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["label"], b[i]["label"])
    # a (position, epoch) item ignores set_epoch
    assert torch.equal(a[(4, 3)]["image"], b[4]["image"])
    a.set_epoch(4)
    assert not torch.equal(a[4]["image"], b[4]["image"])
    assert not torch.equal(SliceDataset(prepared, augment=augment, seed=6)[(4, 3)]["image"], b[4]["image"])
    plain = SliceDataset(prepared)
    assert not torch.equal(plain[4]["image"], b[4]["image"])


def _read_sitk(path):
    import SimpleITK as sitk

    return Image.from_sitk(sitk.ReadImage(str(path)), path)


@pytest.mark.shared_data
def test_real_mri_and_ct(tmp_path):
    from tests.conftest import shared_dataset

    hippocampus = shared_dataset("hippocampus")
    names = sorted(p.name for p in (hippocampus / "imagesTr").glob("*.nii.gz"))[:3]

    def cases():
        for name in names:  # mixed float32 / uint8 label files
            yield name, _read_sitk(hippocampus / "imagesTr" / name), _read_sitk(hippocampus / "labelsTr" / name)

    mri = prepare_slices(cases, tmp_path / "hip", PreparedSpec(input_size=64))
    assert mri.normalization.mode == "percentile" and mri.num_classes == 3 and mri.slice_axis == 0
    assert set(np.unique(mri.labels[:])) == {0, 1, 2}

    ct_folder = shared_dataset("totalseg_ct")
    image = _read_sitk(ct_folder / "example_ct_sm.nii.gz")
    label = _read_sitk(ct_folder / "example_seg.nii.gz")
    ct = prepare_slices([("ct", image, label)], tmp_path / "ct", PreparedSpec(input_size=64))
    assert ct.normalization.mode == "ct" and ct.num_classes == int(label.array.max()) + 1
    assert ct.normalization.lower < -500 < 0 < ct.normalization.upper


def test_phantom_dataset_through_the_data_layer(tmp_path):
    from tskd.data.dataset import load_dataset
    from tskd.data.phantom import write_phantom_dataset

    config = PhantomConfig(size=(32, 28, 10), rotation_deg=(5.0, 0.0, 20.0), origin=(3.0, -4.0, 5.0))
    folder = write_phantom_dataset(tmp_path / "ds", cases=2, unlabelled=1, config=config)
    dataset = load_dataset(folder)
    assert [c.case_id for c in dataset.labelled] == ["case_000", "case_001"]
    assert [c.case_id for c in dataset.unlabelled] == ["case_002"]
    assert dataset.label_table.names == ["background", "organ_a", "organ_b", "lesion"]

    def cases():
        for case in dataset.labelled + dataset.unlabelled:
            image, label = dataset.read_case(case)
            yield case.case_id, image, label

    image, label = next(iter(cases()))[1:]
    expected_image, expected_label = make_phantom(config, 0)
    np.testing.assert_array_equal(image.array, expected_image.array)
    np.testing.assert_array_equal(label.array, expected_label.array)
    assert image.geometry.mismatch(expected_image.geometry) is None

    prepared = prepare_slices(cases, tmp_path / "prep", PreparedSpec(input_size=32))
    assert prepared.case_ids == ["case_000", "case_001", "case_002"]
    assert prepared.num_classes == 4 and len(prepared.indices(case_ids=["case_002"])) == 10


def test_dataset_with_the_engine_sampler_is_resumable(tmp_path):
    from tskd.engine import DrawDataset, StepBatchSampler

    prepared = prepare_slices(_cases(2, 0), tmp_path / "p", PreparedSpec(input_size=24))
    dataset = SliceDataset(prepared, prepared.indices(labelled=True), augment=build_augmentation(), seed=1)

    def batches(start_step):
        sampler = StepBatchSampler(dataset_size=len(dataset), batch_size=4, max_steps=6, start_step=start_step, seed=3)
        loader = torch.utils.data.DataLoader(DrawDataset(dataset), batch_sampler=sampler)
        return [(b["index"].tolist(), b["image"], b["label"]) for b in loader]

    full = batches(0)
    resumed = batches(4)
    assert len(full) == 6 and len(resumed) == 2
    for (idx_a, img_a, lab_a), (idx_b, img_b, lab_b) in zip(full[4:], resumed):
        assert idx_a == idx_b and torch.equal(img_a, img_b) and torch.equal(lab_a, lab_b)
    # the draw's seed is used as it is
    key = next(iter(StepBatchSampler(dataset_size=len(dataset), batch_size=4, max_steps=1, seed=3)))[0]
    assert torch.equal(dataset.sample(*key)["image"], DrawDataset(dataset)[key]["image"])


def test_fit_to_data_writes_small_images_at_their_own_size(tmp_path):
    # 40x32 slices: the smallest multiple of 16 holding 40 is 48, below the 128 upper bound
    spec = PreparedSpec(input_size=128, keep_empty_fraction=0.0, fit_to_data=True)
    prepared = prepare_slices(_cases(), tmp_path / "fit", spec)
    assert prepared.input_size == 48
    assert np.load(tmp_path / "fit" / "images.npy").shape[1:] == (48, 48)
    assert json.loads((tmp_path / "fit" / "index.json").read_text(encoding="utf-8"))["input_size"] == 48
    # an upper bound below the data's size wins; without fit_to_data the size is exact
    assert prepare_slices(_cases(), tmp_path / "cap", PreparedSpec(input_size=32, fit_to_data=True)).input_size == 32
    assert prepare_slices(_cases(), tmp_path / "exact", PreparedSpec(input_size=128)).input_size == 128


@pytest.mark.parametrize("side, expected", [(1, 32), (32, 32), (33, 48), (50, 64), (64, 64), (65, 80), (800, 128)])
def test_planned_size(side, expected):
    assert PreparedSpec(input_size=128, fit_to_data=True).planned_size(side) == expected
    assert PreparedSpec(input_size=128).planned_size(side) == 128


def test_context_slices_store_each_slice_between_its_neighbours(tmp_path):
    """``context_slices`` c: every kept slice gets its c neighbours on either side from the same
    normalised volume (the end slices repeated), the student's dataset serves the stack, the
    teacher's the slice alone, and a pickled copy reopens the neighbours too."""
    cases = _cases(n=2, unlabelled=1)
    spec = PreparedSpec(input_size=32, keep_empty_fraction=0.0, context_slices=2)
    prepared = prepare_slices(cases, tmp_path / "prep", spec)
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == ["images.npy", "index.json", "labels.npy",
                                                                     "neighbours.npy"]
    assert prepared.context_slices == 2 and prepared.channels == 5
    case_id, image, _ = cases[0]
    volume = apply_normalization(image.array, prepared.normalization)
    last = volume.shape[0] - 1
    for n in prepared.indices(case_ids=[case_id]):
        k = prepared.slices[n]["slice_index"]
        stack = prepared.stacked([n])[0]
        assert stack.shape == (5, 32, 32)
        for channel, d in enumerate(range(-2, 3)):
            want = resize_bilinear(volume[min(max(k + d, 0), last)], (32, 32))
            np.testing.assert_allclose(stack[channel], want, atol=2e-3, rtol=2e-3)
    # the empty end slices were not kept (keep_empty_fraction 0), yet their images are the neighbours
    first_kept = prepared.slices[int(prepared.indices(case_ids=[case_id])[0])]["slice_index"]
    assert first_kept >= 1
    item = SliceDataset(prepared, stacked=True)[0]
    assert item["image"].shape == (5, 32, 32)
    np.testing.assert_allclose(item["image"][2].numpy(), prepared.images[0].astype(np.float32))
    assert SliceDataset(prepared)[0]["image"].shape == (1, 32, 32)  # the teacher's view: the slice alone
    augmented = SliceDataset(prepared, stacked=True, augment=build_augmentation(AugmentConfig(affine_prob=1.0)))[0]
    assert augmented["image"].shape == (5, 32, 32)
    copy = pickle.loads(pickle.dumps(prepared))
    np.testing.assert_array_equal(copy.stacked([3]), prepared.stacked([3]))


def test_context_slices_fingerprint_and_2d_images(tmp_path):
    cases = _cases(n=2, unlabelled=0)
    plain = prepare_slices(cases, tmp_path / "a", PreparedSpec(input_size=32))
    again = prepare_slices(cases, tmp_path / "b", PreparedSpec(input_size=32, context_slices=0))
    stacked = prepare_slices(cases, tmp_path / "c", PreparedSpec(input_size=32, context_slices=1))
    # 0 is the setting's absence: folders prepared before it existed keep their fingerprint
    assert plain.fingerprint == again.fingerprint != stacked.fingerprint
    assert "context_slices" not in prepared_module._identity_spec(PreparedSpec(context_slices=2), 0)
    assert plain.context_slices == 0 and plain.channels == 1 and plain.stacked([0]).shape == (1, 1, 32, 32)
    images = []
    for i in range(2):
        image, label = make_phantom(PhantomConfig(size=(50, 40)), i)
        images.append((f"img{i}", image, label))
    flat = prepare_slices(images, tmp_path / "d", PreparedSpec(input_size=32, context_slices=2))
    assert flat.context_slices == 0 and not (tmp_path / "d" / "neighbours.npy").exists()  # 2D: no neighbours
    # ... and the same fingerprint as without the setting: nothing about the slices differs
    assert flat.fingerprint == prepare_slices(images, tmp_path / "e", PreparedSpec(input_size=32)).fingerprint
    with pytest.raises(ConfigError, match="context_slices"):
        PreparedSpec.from_dict({"context_slices": 9})
    (tmp_path / "c" / "neighbours.npy").unlink()
    with pytest.raises(DataError, match="neighbours.npy"):
        PreparedSlices(tmp_path / "c")
