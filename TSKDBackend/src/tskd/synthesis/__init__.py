"""Synthetic expansion of the transfer set (TS-KD stage 2).

A diffusion model trained on the task's own slices (or a user-supplied pretrained one) makes
synthetic images; a quality gate drops memorised, degenerate and teacher-uncertain ones; the rest,
with the teacher's soft labels, join the real slices in the on-disk transfer set that the student
is distilled on. The transfer set's disk format is a dataset format, written by the transfer stage
and read by the student stage, so it lives in the data layer (``tskd.data.transfer_set``).

Modules: ``config`` (DiffusionConfig, QualityGateConfig), ``intensity`` (model range mapping),
``unet`` (network builder), ``model`` (DiffusionModel bundle, schedulers), ``task`` (training step
for the engine), ``sampler`` (deterministic per-seed generation), ``storage`` and ``pretrained``
(model folders), ``quality_gate``, ``grid`` (picture for people).
"""

from __future__ import annotations

from tskd.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "config": ["DiffusionConfig", "QualityGateConfig"],
    "grid": ["save_grid"],
    "intensity": ["IntensityMapping", "decode_labels", "encode_labels"],
    "model": ["DiffusionModel", "build_diffusion_model"],
    "pretrained": ["load_pretrained_pipeline"],
    "quality_gate": ["GateDecision", "GateResult", "QualityGate"],
    "sampler": ["GeneratedSamples", "generate", "iter_generate"],
    "storage": ["fingerprint_arrays", "load_diffusion_model", "save_diffusion_model"],
    "task": ["DiffusionTask"],
})
