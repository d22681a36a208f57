"""Synthetic expansion of the transfer set (TS-KD stage 2).

A diffusion model trained on the task's own slices (or a user-supplied pretrained one) makes
synthetic images; a quality gate drops memorised, degenerate and teacher-uncertain ones; the rest,
with the teacher's soft labels, join the real slices in the on-disk transfer set that the student
is distilled on.

Modules: ``config`` (DiffusionConfig, QualityGateConfig), ``intensity`` (model range mapping),
``unet`` (network builder), ``model`` (DiffusionModel bundle, schedulers), ``task`` (training step
for the engine), ``sampler`` (deterministic per-seed generation), ``storage`` and ``pretrained``
(model folders), ``quality_gate``, ``transfer_set`` (reader, with ``transfer_set_writer`` and ``transfer_set_files``),
``grid`` (picture for people).
"""

from __future__ import annotations

from tskd.synthesis.config import DiffusionConfig, QualityGateConfig
from tskd.synthesis.grid import save_grid
from tskd.synthesis.intensity import IntensityMapping, decode_labels, encode_labels
from tskd.synthesis.model import DiffusionModel, build_diffusion_model
from tskd.synthesis.pretrained import load_pretrained_pipeline
from tskd.synthesis.quality_gate import GateDecision, GateResult, QualityGate
from tskd.synthesis.sampler import GeneratedSamples, generate, iter_generate
from tskd.synthesis.storage import (
    fingerprint_arrays,
    load_diffusion_model,
    save_diffusion_model,
)
from tskd.synthesis.task import DiffusionTask
from tskd.synthesis.transfer_set import (
    TransferItem,
    TransferSet,
    TransferSetDataset,
    TransferSetWriter,
)

__all__ = [
    "DiffusionConfig",
    "QualityGateConfig",
    "IntensityMapping",
    "encode_labels",
    "decode_labels",
    "DiffusionModel",
    "build_diffusion_model",
    "DiffusionTask",
    "GeneratedSamples",
    "generate",
    "iter_generate",
    "save_diffusion_model",
    "load_diffusion_model",
    "fingerprint_arrays",
    "load_pretrained_pipeline",
    "QualityGate",
    "GateDecision",
    "GateResult",
    "TransferSet",
    "TransferSetWriter",
    "TransferSetDataset",
    "TransferItem",
    "save_grid",
]
