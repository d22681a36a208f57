"""Transfer-set stage: the images on which the student learns to imitate the teacher.

Real training slices (labelled and unlabelled) and synthetic images from the diffusion model, each
with the fine-tuned teacher's soft labels, are written to ``RUN/transfer_set/`` shard by shard.
Synthetic images pass a quality gate first (near-duplicates of training images, degenerate images,
images the teacher is unsure about are dropped). An interrupted build resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from tskd.atomic import write_json
from tskd.engine import StopFlag, inference_device
from tskd.errors import CancelledError
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.progress import NullProgress, ProgressEvent, ProgressReporter
from tskd.synthesis.grid import save_grid
from tskd.synthesis.quality_gate import QualityGate
from tskd.data.transfer_set import TransferSet
from tskd.data.transfer_set_files import read_jsonl
from tskd.data.transfer_set_writer import TransferSetWriter
from tskd.teacher.inference import teacher_probabilities
from tskd.teacher.model import SamSegmenter

if TYPE_CHECKING:  # diffusers is imported only when synthesis is enabled (about 1 s of CPU per process)
    from tskd.synthesis.model import DiffusionModel

__all__ = ["build_transfer_set", "MAX_ATTEMPTS_FACTOR"]

logger = logging.getLogger(__name__)

#: At most this many synthetic images are generated per image wanted, whatever the gate drops.
MAX_ATTEMPTS_FACTOR = 4
_CHUNK = 64


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(n, 1, h, w)`` -> ``(n, 1, size, size)`` bilinear (the diffusion model may be smaller)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False).numpy()


def _training_thumbnails(data: PreparedData, indices: np.ndarray, size: int) -> np.ndarray:
    """Area-downsampled training slices ``(n, 1, size, size)``, read a chunk at a time."""
    out = []
    for first in range(0, indices.size, _CHUNK):
        chunk = np.asarray(data.prepared.images[np.sort(indices[first : first + _CHUNK])], dtype=np.float32)
        out.append(F.interpolate(torch.from_numpy(chunk)[:, None], size=(size, size), mode="area").numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, size, size), np.float32)


def _add_real(writer: TransferSetWriter, data: PreparedData, teacher: SamSegmenter, indices: np.ndarray,
              source: str, device: torch.device, flag: StopFlag | None, report: ProgressReporter,
              before: int, total: int) -> None:
    """The teacher's soft labels for the real slices ``indices``; progress counts every real slice and
    synthetic image of the stage (``before`` of them come before these; ``total`` in all)."""
    done = writer.counts().get(source, 0)  # items are added in a fixed order: skip those stored
    for first in range(done, indices.size, _CHUNK):
        if flag is not None and flag.is_set():
            raise CancelledError(f"transfer set stopped ({flag.reason}); run again to resume")
        chunk = indices[first : first + _CHUNK]
        images = np.asarray(data.prepared.images[chunk], dtype=np.float32)[:, None]
        soft = teacher_probabilities(teacher, images, device=device)
        labels = np.asarray(data.prepared.labels[chunk]) if source == "real_labelled" else None
        slices = [data.prepared.slices[int(i)] for i in chunk]
        writer.add_batch(
            images, soft, source=source, labels=labels,
            case_ids=[s["case_id"] for s in slices], slice_indices=[int(s["slice_index"]) for s in slices],
        )
        report(ProgressEvent(stage="transfer_set", step=before + first + chunk.size, total=total))
    writer.flush()


def _reuse_synthetic(writer: TransferSetWriter, previous: Path, teacher: SamSegmenter, model: DiffusionModel,
                     gate: QualityGate, wanted: int, size: int, device: torch.device, flag: StopFlag | None) -> None:
    """Add the synthetic images of a previous transfer set made by the same diffusion model,
    labelled again by ``teacher`` and passed through the gate again (the training set grew); the
    seeds it rejected stay rejected. Generation then only tops up what is still missing."""
    old = TransferSet(previous)
    if old.image_size != size:
        logger.warning("transfer set: %s has %d-pixel images, this run %d; generating new synthetic images",
                       previous, old.image_size, size)
        return
    done = writer.stored_seeds(model.model_id) | writer.rejected_seeds(model.model_id)
    for line in read_jsonl(previous / "rejected.jsonl", repair=False):
        if line.get("model") == model.model_id and int(line["seed"]) not in done:
            writer.reject(int(line["seed"]), model=model.model_id, reason=line.get("reason", ""))
    items = [i for i in old.indices("synthetic") if old.provenance(i).get("model") == model.model_id
             and int(old.provenance(i)["seed"]) not in done]
    stored = len(writer.stored_seeds(model.model_id))
    reused = 0
    for first in range(0, len(items), _CHUNK):
        if stored >= wanted:
            break
        if flag is not None and flag.is_set():
            raise CancelledError(f"transfer set stopped ({flag.reason}); run again to resume")
        chunk = [old[i] for i in items[first : first + _CHUNK]]
        images = np.stack([item.image for item in chunk])[:, None]
        soft = teacher_probabilities(teacher, images, device=device)
        result = gate.evaluate(images, soft)
        for j, (item, decision) in enumerate(zip(chunk, result.decisions)):
            seed = int(item.provenance["seed"])
            if decision.keep and stored < wanted:
                label = item.label.astype(np.uint8) if item.label is not None else None
                writer.add(images[j], soft[j], source="synthetic", label=label, seed=seed, model=model.model_id)
                stored += 1
                reused += 1
            elif not decision.keep:
                writer.reject(seed, model=model.model_id, reason=decision.reason)
        writer.flush()
    logger.info("transfer set: reused %d synthetic images of %s, labelled by the updated teacher", reused, previous)


def _add_synthetic(writer: TransferSetWriter, data: PreparedData, teacher: SamSegmenter, model: DiffusionModel,
                   config: PipelineConfig, device: torch.device, flag: StopFlag | None,
                   report: ProgressReporter, previous: Path | None, *, before: int,
                   total: int) -> None:
    from tskd.synthesis.sampler import iter_generate

    cfg = config.synthesis
    wanted = cfg.num_synthetic
    train_indices = np.concatenate([data.train_labelled, data.train_unlabelled])
    gate = QualityGate(cfg.gate, _training_thumbnails(data, train_indices, cfg.gate.thumbnail_size),
                       clip=model.intensity.clip)
    if previous is not None and (previous / "index.jsonl").is_file():
        _reuse_synthetic(writer, previous, teacher, model, gate, wanted, data.input_size, device, flag)
    candidates = list(range(cfg.seed, cfg.seed + MAX_ATTEMPTS_FACTOR * wanted))
    stored = len(writer.stored_seeds(model.model_id))
    missing = writer.missing_seeds(candidates, model.model_id)
    size = data.input_size
    while stored < wanted and missing:
        if flag is not None and flag.is_set():
            raise CancelledError(f"synthetic generation stopped ({flag.reason}); run again to resume")
        seeds, missing = missing[: cfg.sample_batch_size], missing[cfg.sample_batch_size :]
        for batch in iter_generate(model, seeds, device=device):
            images = _resize(batch.images, size)
            soft = teacher_probabilities(teacher, images, device=device)
            result = gate.evaluate(images, soft)
            for i, decision in enumerate(result.decisions):
                if decision.keep and stored < wanted:
                    label = None
                    if batch.labels is not None:
                        label = F.interpolate(torch.from_numpy(batch.labels[i][None, None]).float(),
                                              size=(size, size), mode="nearest")[0, 0].numpy().astype(np.uint8)
                    writer.add(images[i], soft[i], source="synthetic", label=label, seed=batch.seeds[i],
                               model=model.model_id)
                    stored += 1
                elif not decision.keep:
                    writer.reject(batch.seeds[i], model=model.model_id, reason=decision.reason)
        writer.flush()
        report(ProgressEvent(stage="transfer_set", step=before + stored, total=total))
    if stored < wanted:
        logger.warning("transfer set: only %d of %d synthetic images passed the quality gate after %d attempts",
                       stored, wanted, len(candidates))


def build_transfer_set(
    run: RunFolder,
    data: PreparedData,
    config: PipelineConfig,
    teacher: SamSegmenter,
    diffusion: DiffusionModel | None,
    *,
    progress: ProgressReporter | None = None,
    stop_flag: StopFlag | None = None,
    previous_synthetic: Path | None = None,
) -> dict[str, Any]:
    """Write (or finish) the transfer set and return its summary (counts per source, gate results).

    Args:
        previous_synthetic: a previous run's ``transfer_set/`` (an update): its synthetic images of
            the same diffusion model are labelled again by ``teacher`` instead of being sampled again.
    """
    folder = run.transfer_set
    if (folder / "stage.json").is_file():
        return read_json(folder / "stage.json")
    report = progress or NullProgress()
    device = inference_device(config.teacher.train.device)
    writer = TransferSetWriter(folder, image_size=data.input_size, num_classes=data.num_classes)
    # the teacher's pass over the real slices is most of the stage with a foundation teacher on a CPU (its
    # encoder's first pass over the images: 20-26 minutes for the hippocampus subset in docs/benchmarks.md)
    labelled, unlabelled = data.train_labelled.size, data.train_unlabelled.size
    synthetic = config.synthesis.num_synthetic if diffusion is not None else 0
    total = labelled + unlabelled + synthetic
    logger.info("transfer set: the teacher labels %d labelled and %d unlabelled training slices%s", labelled,
                unlabelled, f", then {synthetic} synthetic images" if synthetic else "")
    _add_real(writer, data, teacher, data.train_labelled, "real_labelled", device, stop_flag, report, 0, total)
    _add_real(writer, data, teacher, data.train_unlabelled, "real_unlabelled", device, stop_flag, report,
              labelled, total)
    if diffusion is not None:
        _add_synthetic(writer, data, teacher, diffusion, config, device, stop_flag, report, previous_synthetic,
                       before=labelled + unlabelled, total=total)
    writer.close()

    rejected = read_jsonl(folder / "rejected.jsonl", repair=False)
    summary = {
        "counts": writer.counts(),
        "dropped": dict(Counter(r.get("reason", "") for r in rejected)),
        "synthetic_model": diffusion.model_id if diffusion is not None else None,
    }
    if diffusion is not None:
        _save_grid(folder, data)
    logger.info("transfer set: %s; synthetic images dropped by the quality gate: %s",
                summary["counts"], summary["dropped"] or "none")
    write_json(folder / "stage.json", summary)
    return summary


def _save_grid(folder: Any, data: PreparedData) -> None:
    """``grid.png``: real training slices beside synthetic images, for a person to look at."""
    transfer = TransferSet(folder)
    synthetic = np.asarray(transfer.indices("synthetic"))[:8]
    real = np.asarray(transfer.indices("real_labelled"))
    real = real[np.linspace(0, len(real) - 1, min(8, len(real))).astype(int)] if len(real) else real
    if len(synthetic) == 0 or len(real) == 0:
        return
    save_grid(
        np.stack([transfer[int(i)].image for i in real]),
        np.stack([transfer[int(i)].image for i in synthetic]),
        folder / "grid.png",
    )
