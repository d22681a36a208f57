"""The ONNX box model (encoder and decoder graphs) reproduces the torch LiteMedSAM on real HC18 images.

Measured 2026-12-06 (cpu-2c, onnxruntime 1.31.1, torch 2.13.0, 6 HC18 images): embeddings agree to
3.4e-6 - 4.4e-6 and decoder logits to 1.1e-6 - 1.5e-6 of their largest magnitude; the ONNX and torch
predictors' masks were identical pixel for pixel. The tests check fewer images than that (each image is
a torch and an onnxruntime encoder pass): the graphs on two (embeddings 4.8e-6 and 4.4e-6, logits 1.4e-6
and 1.4e-6 against the 1e-4 asserted, every mask pixel on the same side), the predictors on three of the
four images they compared before (identical masks at two threads; Dice 0.839, 0.957, 0.965 against the 0.8
asserted). Exact equality is a property of the images: on the 334th name (``hc18_pairs(3)``'s second)
one pixel of the masks differs at one onnxruntime thread.
"""

from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest
from tests.real_data import hc18_pairs

from tskd.preprocess.prompt import box_from_mask, box_to_input, prompt_input
from tskd.runtime import BoxModelInfo, OnnxBoxPredictor, find_box_model
from tskd.runtime.box_model import BOX_METADATA_NAME, DECODER_NAME, ENCODER_NAME, PREPROCESSING
from tskd.runtime.package import PackageError

LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


@pytest.mark.package_index
@pytest.mark.shared_data
def test_graphs_agree_with_torch_on_real_images(litemedsam_model, litemedsam_box_model):
    from tskd.export import verify_box_model

    measured = []
    for image, truth in hc18_pairs(2):
        pixels, frame = prompt_input(image, 256)
        boxes = [box_to_input(frame, box_from_mask(truth)), [5.0, 5.0, 250.0, 250.0], [100.0, 60.0, 104.0, 63.0]]
        result = verify_box_model(litemedsam_model, litemedsam_box_model, pixels, boxes, rtol=1e-4)
        measured.append(result)
        assert result["embedding_rel"] < 1e-4 and result["logits_rel"] < 1e-4
        assert result["mask_agreement"] > 0.9999
    assert len(measured) == 2


@pytest.mark.package_index
@pytest.mark.shared_data
def test_onnx_predictor_masks_equal_torch_predictor(litemedsam_model, litemedsam_box_model):
    from tskd.teacher.prompted import BoxPredictor

    torch_predictor = BoxPredictor(litemedsam_model)
    onnx_predictor = OnnxBoxPredictor(litemedsam_box_model, threads=2)
    compared = 0
    for image, truth in islice(hc18_pairs(4), 3):  # three of the four it compared before (the docstring)
        box = box_from_mask(truth)
        torch_predictor.set_image(image)
        onnx_predictor.set_image(image)
        expected, got = torch_predictor.predict(box), onnx_predictor.predict(box)
        assert got.shape == image.shape and got.dtype == bool
        assert np.array_equal(got, expected), f"{int((got != expected).sum())} pixels differ"
        dice = 2.0 * (got & truth).sum() / (got.sum() + truth.sum())
        assert dice > 0.8
        # two boxes decoded together give the same masks as one at a time
        shifted = box + np.array([-10, -10, 10, 10])
        both = onnx_predictor.predict_many([box, shifted])
        assert np.array_equal(both[0], got) and np.array_equal(both[1], onnx_predictor.predict(shifted))
        compared += 1
    assert compared == 3


@pytest.mark.package_index
def test_metadata_names_model_checkpoint_and_preprocessing(litemedsam_box_model):
    data = json.loads((litemedsam_box_model / BOX_METADATA_NAME).read_text())
    assert data["model"] == "litemedsam" and data["architecture"] == "litemedsam"
    assert data["checkpoint_sha256"] == LITEMEDSAM_SHA256
    assert data["input_size"] == 256 and data["embedding_shape"] == [256, 64, 64]
    assert data["preprocessing"] == PREPROCESSING == "minmax-longest-side-pad"
    info = BoxModelInfo.load(litemedsam_box_model)
    assert info.encoder_path.name == ENCODER_NAME and info.decoder_path.name == DECODER_NAME
    assert find_box_model(litemedsam_box_model) == litemedsam_box_model


def _fake_model(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": "tskd-box-model", "format_version": 1, "model": "x", "architecture": "litemedsam",
            "checkpoint_sha256": "a" * 64, "input_size": 256, "embedding_shape": [256, 64, 64],
            "preprocessing": PREPROCESSING}
    data.update(changes)
    (folder / BOX_METADATA_NAME).write_text(json.dumps(data))
    for name in (ENCODER_NAME, DECODER_NAME):
        (folder / name).write_bytes(b"not a graph")
    return folder


def test_find_box_model_in_a_run_and_clear_errors(tmp_path):
    run = tmp_path / "run"
    folder = _fake_model(run / "package" / "box_model")
    assert find_box_model(run) == folder
    assert find_box_model(run / "package") == folder
    with pytest.raises(PackageError, match="not found"):
        find_box_model(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(PackageError, match="no exported box model.*litemedsam"):
        find_box_model(tmp_path / "plain")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "tskd-student"}, "not an exported box model"),
        ({"format_version": 99}, "newer than this version"),
        ({"preprocessing": "zscore"}, "'preprocessing'"),
        ({"input_size": "256"}, "'input_size'"),
        ({"embedding_shape": [256, 64]}, "'embedding_shape'"),
        ({"checkpoint_sha256": "abc"}, "'checkpoint_sha256'"),
    ],
)
def test_bad_metadata_is_refused_by_field(tmp_path, changes, message):
    with pytest.raises(PackageError, match=message):
        BoxModelInfo.load(_fake_model(tmp_path / "m", **changes))


def test_missing_or_damaged_graph(tmp_path):
    folder = _fake_model(tmp_path / "m")
    (folder / DECODER_NAME).unlink()
    with pytest.raises(PackageError, match=f"{DECODER_NAME}: missing"):
        BoxModelInfo.load(folder)
    folder = _fake_model(tmp_path / "n")
    with pytest.raises(PackageError, match="onnxruntime cannot load the graph"):
        OnnxBoxPredictor(folder)
    (folder / BOX_METADATA_NAME).write_text("{not json")
    with pytest.raises(PackageError, match="cannot be read as JSON"):
        BoxModelInfo.load(folder)



def test_an_export_runs_the_encoder_only_to_trace_it(tmp_path, monkeypatch):
    """``export_box_model`` passes no image through the encoder besides the encoder's own trace: the decoder
    is traced on an embedding of the encoder's output shape (its values do not enter the graph), one encoder
    pass fewer for every export (a run's package, the server's and ``tskd segment-box``'s zero-shot model;
    their graphs' agreement with torch is checked by ``verify_on_pattern`` after each export and by the tests
    above). The metadata keeps the encoder's real output shape. LiteMedSAM's layout, random weights, 64 px;
    the ONNX writer is replaced by a recorder (its tracing costs seconds and is tested with the real export)."""
    import torch
    from tests.teacher.test_tiny_vit import _official_state

    from tskd.export import box_export
    from tskd.teacher.architectures import build_sam
    from tskd.teacher.checkpoints import load_pretrained_segmenter

    torch.manual_seed(3)
    path = tmp_path / "lite_medsam.pth"
    torch.save(_official_state(build_sam("litemedsam", input_size=256, num_classes=2)), path)
    model = load_pretrained_segmenter(str(path), input_size=64, num_classes=2).eval()
    passes, traced = [], {}

    def record(module, args, path, **kwargs):
        traced[path.name] = [tuple(a.shape) for a in args]
        path.write_bytes(b"graph")

    monkeypatch.setattr(box_export, "write_onnx_graph", record)
    handle = model.sam.vision_encoder.register_forward_hook(lambda module, args, out: passes.append(1))
    folder = box_export.export_box_model(model, tmp_path / "export")  # the export's copy keeps the hook
    handle.remove()
    assert passes == []  # the real writer's trace is the export's one pass
    with torch.no_grad():
        real = model.image_embeddings(torch.rand(1, 1, 64, 64))
    assert traced == {ENCODER_NAME: [(1, 1, 64, 64)], DECODER_NAME: [tuple(real.shape), (2, 4)]}
    data = json.loads((folder / BOX_METADATA_NAME).read_text())
    assert data["embedding_shape"] == list(real.shape[1:]) == [256, 16, 16]
