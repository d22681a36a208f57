"""save_teacher / load_teacher: what is written, identical predictions, base checks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import tskd
from tskd.errors import CheckpointError
from tskd.teacher.build import build_teacher
from tskd.teacher.config import LoraConfig, TeacherConfig
from tskd.teacher.storage import load_teacher, read_teacher_info, save_teacher


def _perturb_trainable(model, seed=0):
    """Pretend training happened: LoRA B is zero at start, so move every trainable weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))


def test_foundation_teacher_round_trip(tiny_checkpoints, tmp_path, monkeypatch):
    base = tmp_path / "sam_tiny.pth"
    shutil.copy(tiny_checkpoints.official_pth, base)
    config = TeacherConfig(base=str(base), input_size=64, lora=LoraConfig(rank=2), prompt_mode="box")
    model = build_teacher(config, num_classes=3)
    _perturb_trainable(model)
    folder = tmp_path / "teacher"
    json_path = save_teacher(model, folder, config, label_names=["background", "liver", "tumour"])

    assert sorted(p.name for p in folder.iterdir()) == ["adapter_decoder.safetensors", "teacher.json"]
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    assert meta["architecture"] == "tiny" and meta["input_size"] == 64 and meta["num_classes"] == 3
    assert meta["label_names"] == ["background", "liver", "tumour"]
    assert meta["has_foundation_weights"] is True and meta["prompt_mode"] == "box"
    assert meta["lora"] == {"rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["qkv"]}
    assert meta["base"]["path"] == str(base.resolve()) and meta["base"]["size"] == base.stat().st_size
    assert meta["base"]["sha256"] == model.base.sha256 and meta["tskd_version"] == tskd.__version__
    saved = load_file(str(folder / "adapter_decoder.safetensors"))
    assert saved and all(".lora_" in k or k.startswith("sam.mask_decoder.") for k in saved)
    assert any(".lora_A." in k for k in saved)
    assert read_teacher_info(folder)["config"]["lora"]["rank"] == 2

    import tskd.teacher.storage as storage

    walks = []
    counted = storage._saved_keys
    monkeypatch.setattr(storage, "_saved_keys", lambda m: walks.append(1) or counted(m))
    loaded = load_teacher(folder)
    # the stored keys are worked out once per load (per state-dict key, LiteMedSAM's took 3 s a load)
    assert len(walks) == 1
    monkeypatch.undo()
    assert loaded.prompt_mode == "box" and loaded.has_foundation_weights and not loaded.training
    x = torch.randn(2, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    # the base moved: load from its new place (same bytes)
    moved = tmp_path / "elsewhere" / "sam_tiny.pth"
    moved.parent.mkdir()
    shutil.move(base, moved)
    with pytest.raises(CheckpointError, match="not there; pass the file's new location"):
        load_teacher(folder)
    with torch.no_grad():
        assert torch.equal(load_teacher(folder, base=moved)(x), model(x))

    # a different base file with the same name is refused, naming both hashes
    state = dict(tiny_checkpoints.official_state)
    state["image_encoder.blocks.0.mlp.lin1.bias"] = state["image_encoder.blocks.0.mlp.lin1.bias"] + 1.0
    torch.save(state, moved)
    with pytest.raises(CheckpointError) as info:
        load_teacher(folder, base=moved)
    message = str(info.value)
    assert str(moved) in message and meta["base"]["sha256"] in message and "SHA-256" in message
    assert not list(folder.glob("*.tmp"))


def test_scratch_teacher_is_saved_whole(tmp_path):
    torch.manual_seed(0)
    config = TeacherConfig(base="none", architecture="tiny", input_size=64)
    model = build_teacher(config, num_classes=2)
    _perturb_trainable(model)
    folder = tmp_path / "teacher"
    save_teacher(model, folder, config)
    meta = read_teacher_info(folder)
    assert meta["has_foundation_weights"] is False and meta["base"] is None and meta["lora"] is None
    assert meta["weights"] == "model.safetensors"
    loaded = load_teacher(folder)
    sam = loaded.sam
    assert sam.prompt_encoder.shared_embedding.positional_embedding is sam.shared_image_embedding.positional_embedding
    x = torch.randn(2, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_incomplete_or_foreign_folders_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no teacher.json"):
        load_teacher(tmp_path)
    (tmp_path / "teacher.json").write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a tskd teacher"):
        load_teacher(tmp_path)
    config = TeacherConfig(base="none", architecture="tiny", input_size=64)
    folder = tmp_path / "t"
    save_teacher(build_teacher(config, num_classes=2), folder, config)
    (folder / "model.safetensors").write_bytes(b"changed")
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_teacher(folder)
