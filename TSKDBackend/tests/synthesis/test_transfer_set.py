from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tskd.errors import DataError
from tskd.data.transfer_set import TransferSet, TransferSetDataset, TransferSetWriter

S, K = 8, 3


def _item(i: int):
    rng = np.random.default_rng(i)
    image = rng.normal(size=(S, S)).astype(np.float32)
    logits = rng.normal(size=(K, S, S))
    soft = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)
    label = rng.integers(0, K, (S, S))
    return image, soft, label


def _fill(writer, real=5, synthetic=(0, 7)):
    for i in range(real):
        image, soft, label = _item(i)
        writer.add(image, soft, source="real_labelled" if i % 2 == 0 else "real_unlabelled",
                   label=label if i % 2 == 0 else None, case_id=f"case{i}", slice_index=i * 3)
    for seed in range(*synthetic):
        image, soft, _ = _item(100 + seed)
        writer.add(image[None], soft, source="synthetic", seed=seed, model="m1")


def test_write_and_read_back(tmp_path):
    with TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, shard_size=4) as writer:
        _fill(writer)
        assert len(writer) == 12 and writer.stored_seeds() == set(range(7))
    ts = TransferSet(tmp_path / "ts")
    assert len(ts) == 12
    assert ts.counts() == {"real_labelled": 3, "real_unlabelled": 2, "synthetic": 7}
    assert sorted(p.name for p in (tmp_path / "ts" / "shards").iterdir()) == ["000000", "000001", "000002"]
    item = ts[0]
    image, soft, label = _item(0)
    np.testing.assert_allclose(item.image, image, atol=2e-3 * np.abs(image).max())
    np.testing.assert_allclose(item.soft, soft, atol=2.5e-4)
    np.testing.assert_array_equal(item.label, label)
    assert item.provenance["case_id"] == "case0" and item.provenance["slice_index"] == 0
    assert ts[1].label is None
    last = ts[-1]
    assert last.provenance["source"] == "synthetic" and last.provenance["seed"] == 6
    np.testing.assert_allclose(last.soft, _item(106)[1], atol=2.5e-4)
    assert ts.seeds() == list(range(7)) and ts.indices("real_unlabelled") == [1, 3]


def test_shards_are_opened_lazily_and_few_at_a_time(tmp_path):
    with TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, shard_size=2) as writer:
        _fill(writer, real=0, synthetic=(0, 10))
    ts = TransferSet(tmp_path / "ts", max_open_shards=2)
    assert ts.shards_opened == 0 and len(ts) == 10
    ts[9]
    ts[8]
    assert ts.shards_opened == 1
    for i in range(10):
        ts[i]
    assert ts.shards_opened == 6 and len(ts._open) == 2


def test_torch_dataset_view_and_dataloader(tmp_path):
    with TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, shard_size=4) as writer:
        _fill(writer)
    ts = TransferSet(tmp_path / "ts")
    ds = ts.dataset()
    sample = ds[0]
    assert sample["image"].shape == (1, S, S) and sample["image"].dtype == torch.float32
    assert sample["soft"].shape == (K, S, S) and sample["soft"].dtype == torch.float32
    assert sample["label"].shape == (S, S) and sample["label"].dtype == torch.int64
    assert sample["labelled"] is True and sample["index"] == 0
    unlabelled = ds[1]
    assert unlabelled["labelled"] is False and int(unlabelled["label"].abs().sum()) == 0
    synthetic = TransferSetDataset(tmp_path / "ts", indices=ts.indices("synthetic"))
    batches = list(DataLoader(synthetic, batch_size=3, shuffle=False))
    assert [b["index"].tolist() for b in batches] == [[5, 6, 7], [8, 9, 10], [11]]
    assert batches[0]["labelled"].tolist() == [False] * 3
    assert ts.shards_opened == 1  # the dataset views share nothing but the folder


def test_uint8_soft_labels_are_close_and_normalised(tmp_path):
    with TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, soft_dtype="uint8") as writer:
        _fill(writer, real=2, synthetic=(0, 0))
    ts = TransferSet(tmp_path / "ts")
    soft = ts[0].soft
    np.testing.assert_allclose(soft, _item(0)[1], atol=6e-3)
    np.testing.assert_allclose(soft.sum(axis=0), 1.0, atol=1e-5)
    assert np.load(tmp_path / "ts" / "shards" / "000000" / "soft.npy").dtype == np.uint8


def test_resume_reports_seeds_and_rejections(tmp_path):
    writer = TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, shard_size=4)
    _fill(writer, real=0, synthetic=(0, 6))
    writer.reject(6, model="m1", reason="duplicate")
    writer.flush()
    resumed = TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K, shard_size=4)
    assert resumed.stored_seeds("m1") == set(range(6)) and resumed.stored_seeds("other") == set()
    assert resumed.missing_seeds(range(10), model="m1") == [7, 8, 9]
    with pytest.raises(DataError, match="num_classes"):
        TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K + 1)


def test_crash_leftovers_are_recovered(tmp_path):
    folder = tmp_path / "ts"
    with TransferSetWriter(folder, image_size=S, num_classes=K, shard_size=3) as writer:
        _fill(writer, real=0, synthetic=(0, 6))
    # crash 1: shard renamed into place, its index lines never appended (here: the last one torn)
    index = folder / "index.jsonl"
    lines = index.read_text(encoding="utf-8").splitlines(keepends=True)
    index.write_text("".join(lines[:4]) + lines[4][:10], encoding="utf-8")
    # crash 2: a shard half written in its temporary folder
    shutil.copytree(folder / "shards" / "000000", folder / "shards" / "000002.tmp")
    reader = TransferSet(folder)
    assert len(reader) == 4  # a reader trusts complete index lines only
    writer = TransferSetWriter(folder, image_size=S, num_classes=K, shard_size=3)
    assert len(writer) == 6 and writer.stored_seeds() == set(range(6))
    assert not (folder / "shards" / "000002.tmp").exists()
    rows = [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines()]
    assert [(r["shard"], r["row"], r["seed"]) for r in rows] == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 3), (1, 1, 4), (1, 2, 5)]
    image, soft, _ = _item(106)
    writer.add(image, soft, source="synthetic", seed=6, model="m1")
    writer.close()
    ts = TransferSet(folder)
    assert len(ts) == 7 and ts[6].provenance["shard"] == 2
    np.testing.assert_allclose(ts[6].soft, soft, atol=2.5e-4)


def test_bad_items_are_refused(tmp_path):
    writer = TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K)
    image, soft, label = _item(0)
    with pytest.raises(ValueError, match="seed"):
        writer.add(image, soft, source="synthetic")
    with pytest.raises(ValueError, match="source"):
        writer.add(image, soft, source="fake")
    with pytest.raises(ValueError, match="sum to one"):
        writer.add(image, soft * 0.5, source="real_unlabelled")
    with pytest.raises(ValueError, match="label values"):
        writer.add(image, soft, source="real_labelled", label=label + K)
    with pytest.raises(ValueError, match="image must be"):
        writer.add(image[:4], soft, source="real_unlabelled")
    with pytest.raises(DataError, match="not a transfer set"):
        TransferSet(tmp_path / "nothing")


class _Stacks:
    """Prepared slices holding neighbours (context 1): the stack of slice ``n`` is ``n`` in every pixel."""

    context_slices, channels = 1, 3

    def __init__(self, keys):
        self.slices = [{"case_id": case, "slice_index": index} for case, index in keys]

    def stacked(self, indices):
        return np.stack([np.full((3, S, S), float(n), np.float32) for n in indices])


def test_the_students_view_stacks_real_slices_and_repeats_synthetic_images(tmp_path):
    with TransferSetWriter(tmp_path / "ts", image_size=S, num_classes=K) as writer:
        _fill(writer, real=3, synthetic=(0, 1))
    prepared = _Stacks([("case2", 6), ("case0", 0), ("case1", 3)])
    view = TransferSetDataset(tmp_path / "ts", prepared=prepared)
    assert [float(view[i]["image"][0, 0, 0]) for i in range(3)] == [1.0, 2.0, 0.0]  # case0, case1, case2
    assert view[0]["image"].shape == (3, S, S)
    synthetic = view[3]["image"]
    np.testing.assert_allclose(synthetic[0].numpy(), TransferSet(tmp_path / "ts")[3].image)
    assert synthetic.shape == (3, S, S) and bool((synthetic[0] == synthetic[2]).all())
    single = TransferSetDataset(tmp_path / "ts", prepared=type("Flat", (), {"context_slices": 0})())
    assert single[0]["image"].shape == (1, S, S)
