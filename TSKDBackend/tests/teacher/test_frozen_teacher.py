"""The frozen-encoder teacher (the CPU default for a foundation teacher), its embedding cache, and the
box-prompted teacher, on a LiteMedSAM-layout checkpoint with random weights (64 px, fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.teacher.test_tiny_vit import _official_state

from tskd.teacher.architectures import build_sam
from tskd.teacher.box_teacher import BoxPromptedTeacher, box_prompted_teacher, component_boxes
from tskd.teacher.build import build_teacher
from tskd.teacher.config import TeacherConfig
from tskd.teacher.embedding_cache import EmbeddingCache
from tskd.teacher.storage import load_teacher, read_teacher_info, save_teacher

SIZE = 64


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("lite") / "lite_medsam.pth"
    torch.save(_official_state(build_sam("litemedsam", input_size=256, num_classes=3)), path)
    return path


def _config(path, **fields) -> TeacherConfig:
    return TeacherConfig(base=str(path), input_size=SIZE, **fields)


def test_auto_freezes_the_encoder_on_a_cpu_and_uses_lora_on_a_gpu(lite_checkpoint):
    assert _config(lite_checkpoint).resolved_encoder(on_cpu=True) == "frozen"
    assert _config(lite_checkpoint).resolved_encoder(on_cpu=False) == "lora"
    frozen = build_teacher(_config(lite_checkpoint), 2, on_cpu=True)
    assert frozen.lora is None and frozen.encoder_frozen
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("sam.mask_decoder.") for n in trainable)
    lora = build_teacher(_config(lite_checkpoint), 2, on_cpu=False)
    assert lora.lora is not None and not lora.encoder_frozen
    assert any(".lora_A." in n for n, p in lora.named_parameters() if p.requires_grad)


def test_frozen_batch_norms_keep_their_running_statistics_in_train_mode(lite_checkpoint):
    model = build_teacher(_config(lite_checkpoint, encoder="lora"), 2)  # LoRA on attention: the convs stay frozen
    model.train()
    norms = [m for m in model.sam.vision_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = norms[0].running_mean.clone()
    model(torch.randn(2, 1, SIZE, SIZE))
    assert torch.equal(before, norms[0].running_mean)


def test_embeddings_are_computed_once_and_shared_across_models(lite_checkpoint, tmp_path):
    model = build_teacher(_config(lite_checkpoint), 2, on_cpu=True, embedding_cache_root=tmp_path)
    cache = model.embedding_cache
    assert isinstance(cache, EmbeddingCache)
    x = torch.randn(3, 1, SIZE, SIZE)
    with torch.no_grad():
        direct = model._encode(x)
        first = model.image_embeddings(x)
        again = model.image_embeddings(x[[2, 0]])
    assert (cache.misses, cache.hits) == (3, 2)
    torch.testing.assert_close(first, direct, rtol=1e-3, atol=1e-3)  # stored as float16
    torch.testing.assert_close(again, first[[2, 0]])
    # another run on the same images and weights finds them; another image does not
    other = build_teacher(_config(lite_checkpoint), 2, on_cpu=True, embedding_cache_root=tmp_path)
    with torch.no_grad():
        other.image_embeddings(torch.cat([x[:1], torch.randn(1, 1, SIZE, SIZE)]))
    assert (other.embedding_cache.hits, other.embedding_cache.misses) == (1, 1)
    assert len(list(cache.folder.glob("*/*.npy"))) == 4


def test_a_damaged_cache_file_is_computed_again(lite_checkpoint, tmp_path):
    model = build_teacher(_config(lite_checkpoint), 2, on_cpu=True, embedding_cache_root=tmp_path)
    x = torch.randn(1, 1, SIZE, SIZE)
    with torch.no_grad():
        expected = model.image_embeddings(x)
        (stored,) = list(model.embedding_cache.folder.glob("*/*.npy"))
        stored.write_bytes(b"not an array")
        torch.testing.assert_close(model.image_embeddings(x), expected)


def test_a_frozen_teacher_saves_only_its_decoder_and_loads_frozen(lite_checkpoint, tmp_path):
    config = _config(lite_checkpoint)
    model = build_teacher(config, 2, on_cpu=True)
    with torch.no_grad():
        model.sam.mask_decoder.mask_tokens.weight.add_(1.0)  # "training"
    save_teacher(model, tmp_path / "teacher", config)
    assert read_teacher_info(tmp_path / "teacher")["lora"] is None
    loaded = load_teacher(tmp_path / "teacher")
    assert loaded.lora is None and loaded.encoder_frozen
    torch.testing.assert_close(loaded.sam.mask_decoder.mask_tokens.weight, model.sam.mask_decoder.mask_tokens.weight)
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_component_boxes_one_per_class_and_component():
    labels = np.zeros((40, 50), dtype=np.int64)
    labels[5:15, 5:10] = 1
    labels[20:30, 30:45] = 1
    labels[32:38, 2:12] = 2
    labels[0, 49] = 2  # a one-pixel speck: no box
    boxes = component_boxes(labels, 3, margin=0.0, min_pixels=2)
    assert [cls for cls, _ in boxes] == [1, 1, 2]
    np.testing.assert_allclose(boxes[0][1], [4, 4, 10, 15])  # at least one pixel of margin
    np.testing.assert_allclose(boxes[2][1], [1, 31, 12, 38])
    assert component_boxes(np.zeros((8, 8), dtype=np.int64), 3) == []


def test_box_prompted_teacher_gives_probabilities_and_background_where_nothing_is_found(lite_checkpoint, tmp_path):
    torch.manual_seed(0)
    locator = build_teacher(_config(lite_checkpoint), 3, on_cpu=True, embedding_cache_root=tmp_path)
    teacher = box_prompted_teacher(locator, embedding_cache_root=tmp_path)
    assert isinstance(teacher, BoxPromptedTeacher) and teacher._shares_encoder()
    x = torch.randn(2, 1, SIZE, SIZE)
    probs = teacher.probabilities(x)
    assert probs.shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, SIZE, SIZE))
    torch.testing.assert_close(torch.softmax(teacher(x), dim=1), probs, rtol=1e-4, atol=1e-5)
    # a locator that finds nothing: every pixel background
    with torch.no_grad():
        locator.sam.mask_decoder.output_hypernetworks_mlps[1].proj_out.bias.fill_(1e4)  # class-0 logit huge
    empty = teacher.probabilities(x)
    torch.testing.assert_close(empty[:, 0], torch.ones(2, SIZE, SIZE))


def test_boxes_need_foundation_weights():
    scratch = build_teacher(TeacherConfig(base="none", architecture="tiny", input_size=SIZE), 2)
    with pytest.raises(ValueError, match="foundation weights"):
        box_prompted_teacher(scratch)


@pytest.mark.parametrize("teaching", ["prompt_free", "boxes"])
def test_a_loaded_frozen_teacher_keeps_its_embeddings_between_calls(lite_checkpoint, tmp_path, teaching):
    """``tskd suggest`` and ``tskd teacher predict`` load the teacher with ``load_teacher_slice_model``: a
    frozen foundation encoder gets the run's embedding cache, so a second call on the same slices (the next
    suggestion round on an unchanged pool) does not run the encoder again; ``embedding_cache=None`` turns it off."""
    from tskd.atomic import write_json
    from tskd.data.labels import LabelTable
    from tskd.inference.teacher_model import PREPROCESSING_JSON, load_teacher_slice_model
    from tskd.preprocess import NormalizationSpec

    cache = tmp_path / "embeddings"
    config = _config(lite_checkpoint, embedding_cache=str(cache))
    save_teacher(build_teacher(config, 2, on_cpu=True), tmp_path / "teacher", config)
    write_json(tmp_path / "teacher" / PREPROCESSING_JSON, {"labels": LabelTable.default([0, 1]).to_dict(),
                                                           "normalization": NormalizationSpec().to_dict(),
                                                           "slice_axis": 0})
    batch = np.random.default_rng(0).random((2, 1, SIZE, SIZE), dtype=np.float32)
    def parts_of(model):  # the models holding an encoder: the teacher, or the box-prompted teacher's two
        return (model.network.locator, model.network.prompter) if teaching == "boxes" else (model.network,)

    first = load_teacher_slice_model(tmp_path, device="cpu", teaching=teaching)
    parts = parts_of(first)
    assert all(part.embedding_cache is not None and part.embedding_cache.folder.parent == cache for part in parts)
    expected = first.logits(batch)
    # each slice encoded once (the box-prompted teacher's two parts share one encoder pass)
    assert sum(part.embedding_cache.misses for part in parts) == 2
    # a second load (the next round) finds every embedding: the encoder does not run
    again = load_teacher_slice_model(tmp_path, device="cpu", teaching=teaching)
    parts = parts_of(again)
    for part in parts:
        part._encode = None  # would fail if called
    np.testing.assert_allclose(again.logits(batch), expected, rtol=1e-4, atol=1e-4)
    assert sum(part.embedding_cache.hits for part in parts) == 2
    assert all(part.embedding_cache.misses == 0 for part in parts)
    off = load_teacher_slice_model(tmp_path, device="cpu", teaching=teaching, embedding_cache=None)
    assert all(part.embedding_cache is None for part in parts_of(off))
