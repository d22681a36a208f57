"""The sections of ``gpu_check.py``, each run in its own process by the parent (one failure or
hang stops only its own section). Each ``section_*`` takes the spec the parent planned and returns
a JSON-able dict; the parent records an exception as the section's ``error``.

Sizes come from the spec (the GPU sizes, or ``--quick``'s tiny ones), never from here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import REPO, machine_info, summarise

__all__ = ["SECTIONS", "run_section"]

BACKEND = REPO / "TSKDBackend"
CLASSES = 3  # background and two structures in the synthetic teacher/student samples
TRAINING_STAGES = ("teacher", "synthesis", "distill", "finetune", "reference", "mae")  # training loops


# ----------------------------------------------------------------------------------- helpers
def _device(spec: dict[str, Any]) -> str:
    import torch

    wanted = spec["device"]
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA GPU")
    return "cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


class TrainerLog(logging.Handler):
    """Collects the engine's "training on DEVICE, mixed precision P" records, per stage."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stages: dict[str, dict[str, str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "tskd_device"):
            self.stages[record.tskd_stage] = {"device": record.tskd_device,
                                              "mixed_precision": record.tskd_mixed_precision}


def _watch_trainer() -> TrainerLog:
    handler = TrainerLog()
    engine_logger = logging.getLogger("tskd.engine.trainer")
    engine_logger.addHandler(handler)
    engine_logger.setLevel(logging.INFO)
    return handler


def _step_times(stamps: list[float], warmup: int) -> list[float]:
    """Seconds between successive step callbacks after ``warmup`` steps (step 1 holds the set-up)."""
    return [b - a for a, b in zip(stamps, stamps[1:])][max(0, warmup - 1):]


def write_official_sam(path: Path, architecture: str) -> dict[str, Any]:
    """Random SAM weights of ``architecture`` at its native 1024-pixel input, saved in Meta's layout
    by the tests' checkpoint writer (``tests/teacher/teacher_sam_reference.py``)."""
    if str(BACKEND) not in sys.path:
        sys.path.insert(0, str(BACKEND))  # the ``tests`` package of the checkout
    import torch
    from tests.teacher.teacher_sam_reference import write_official_checkpoint

    from tskd.teacher import build_sam

    torch.manual_seed(0)
    start = time.perf_counter()
    # 3 classes: 4 mask tokens, as in Meta's checkpoints (3 multimask outputs + 1)
    write_official_checkpoint(build_sam(architecture, input_size=1024, num_classes=3), path)
    return {"path": str(path), "architecture": architecture, "bytes": path.stat().st_size,
            "write_s": time.perf_counter() - start}


# ----------------------------------------------------------------------------------- machine
def _nvidia_smi() -> dict[str, Any]:
    fields = ("name", "driver_version", "memory.total", "memory.used", "clocks.max.sm", "power.limit",
              "temperature.gpu", "pci.bus_id")
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"available": False, "reason": "nvidia-smi is not on the PATH"}
    done = subprocess.run([exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return {"available": False, "reason": (done.stderr or done.stdout).strip()[:300]}
    gpus = [dict(zip(fields, (v.strip() for v in line.split(",")))) for line in done.stdout.strip().splitlines()]
    head = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
    cuda_line = next((line for line in head.splitlines() if "CUDA Version" in line), "")
    return {"available": True, "gpus": gpus, "header": cuda_line.strip(" |")}


def _requirements() -> dict[str, Any]:
    """The backend's declared dependencies against what this Python has (the bundle's install is --no-deps)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {"error": "tomllib needs Python 3.11+"}
    project = tomllib.loads((BACKEND / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    rows = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            version = None
        rows[requirement.name] = {"required": str(requirement.specifier), "installed": version,
                                  "ok": version is not None and requirement.specifier.contains(version, True)}
    return {"python": project.get("requires-python"), "packages": rows,
            "unmet": sorted(name for name, row in rows.items() if not row["ok"])}


def section_machine(spec: dict[str, Any]) -> dict[str, Any]:
    """nvidia-smi, torch / CUDA / cuDNN versions, the GPU as torch sees it, onnxruntime's providers."""
    import onnxruntime
    import torch

    import tskd

    info: dict[str, Any] = {
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "tskd": tskd.__version__, "tskd_from": str(Path(tskd.__file__).parent),
        "nvidia_smi": _nvidia_smi(), "requirements": _requirements(),
        "machine": machine_info(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "memory_gib": props.total_memory / 2**30, "multiprocessors": props.multi_processor_count,
                       "bf16_supported": torch.cuda.is_bf16_supported()}
        info["machine"]["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


# ----------------------------------------------------------------------------------- demo
class StepRecorder:
    """A progress reporter keeping (time, stage, step, total, state) of every event."""

    def __init__(self) -> None:
        from tskd.progress import ProgressReporter

        class _Reporter(ProgressReporter):
            def render(inner, event) -> None:  # noqa: N805 - the closure's self is the recorder
                self.events.append((time.monotonic(), event.stage, event.step, event.total, event.state))

        self.events: list[tuple[float, str, int, int, str]] = []
        self.reporter = _Reporter()

    def stage_rates(self) -> dict[str, dict[str, Any]]:
        """Per training stage: steps seen, median seconds per step, and the intervals well above it
        (validation and checkpoints inside the loop) with their extra seconds."""
        by_stage: dict[str, list[tuple[float, int]]] = {}
        for stamp, stage, step, total, state in self.events:
            if stage in TRAINING_STAGES and total > 0 and step > 0 and state == "running":
                points = by_stage.setdefault(stage, [])
                if not points or step > points[-1][1]:
                    points.append((stamp, step))
        rates = {}
        for stage, points in by_stage.items():
            intervals = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(points, points[1:])]
            if not intervals:
                continue
            steady = intervals[1:] or intervals  # the first interval can hold data-loader start-up
            median = statistics.median(steady)
            slow = [x - median for x in steady if x > 3 * median and x - median > 0.05]
            rates[stage] = {"steps": points[-1][1], "timed_intervals": len(steady), "median_step_s": median,
                            "steps_per_s": 1.0 / median if median > 0 else None,
                            "slow_intervals": len(slow), "mean_extra_s_of_slow": statistics.mean(slow) if slow else 0.0,
                            "loop_s": points[-1][0] - points[0][0], "first_event_t": points[0][0],
                            "last_event_t": points[-1][0]}
        return rates


def section_demo(spec: dict[str, Any]) -> dict[str, Any]:
    """``tskd demo`` (its function, as the command calls it) with the device on ``auto``."""
    import torch

    from tskd.runconfig import resolve_config
    from tskd.pipeline.demo import run_demo

    trainer_log, recorder = _watch_trainer(), StepRecorder()
    device = _device(spec)
    config = resolve_config(preset=spec["preset"], max_steps=spec.get("max_steps"), overrides=spec.get("overrides"))
    _reset_peak(device)
    start = time.perf_counter()
    result = run_demo(Path(spec["workdir"]) / "demo", config, cases=spec["cases"],
                      unlabelled=spec["unlabelled"], test_cases=spec["test_cases"], progress=recorder.reporter)
    wall = time.perf_counter() - start
    summary = result["test"]["summary"]
    return {
        "command": f"tskd demo --preset {spec['preset']}" + (f" --max-steps {spec['max_steps']}"
                                                              if spec.get("max_steps") else "")
                   + (f" (settings changed: {spec['overrides']})" if spec.get("overrides") else ""),
        "wall_s": wall, "pipeline_s": result["run"].get("seconds"), "test_cases": result["test"]["cases"],
        "mean_dice": summary["mean_dice"],
        "dice_per_class": {entry["name"]: entry["dice"] for entry in summary["per_class"].values()},
        "training": trainer_log.stages, "cuda_used": device == "cuda" and torch.cuda.max_memory_allocated() > 0,
        "peak_gpu_allocated_mib": _peak_mib(device),
        "stage_rates": {k: {x: v for x, v in r.items() if not x.endswith("_event_t")}
                        for k, r in recorder.stage_rates().items()},
    }


# ----------------------------------------------------------------------------------- teacher
def _teacher_pool(size: int, count: int = 4) -> list[dict[str, Any]]:
    import torch

    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    samples = []
    for index in range(count):
        centre = size * (0.3 + 0.1 * index)
        label = ((yy - centre) ** 2 + (xx - centre) ** 2 < (size / 6) ** 2).long()
        label[size // 8: size // 4, size // 2: size * 3 // 4] = 2
        image = label.float()[None] + 0.3 * torch.randn((1, size, size), generator=generator)
        samples.append({"image": image, "label": label})
    return samples


def section_teacher(spec: dict[str, Any]) -> dict[str, Any]:
    """SAM + LoRA from the official-layout file: training steps at each size, batch and ONE precision
    (accelerate fixes the precision per process, so the parent runs one process per precision);
    inference per image (full precision, as the pipeline labels the transfer set) with the bf16 one."""
    import torch

    from tskd.engine import Trainer
    from tskd.runconfig import resolve_config
    from tskd.teacher import LoraConfig, TeacherTask, apply_lora, load_pretrained_segmenter, trainable_parameter_report
    from tskd.teacher.inference import teacher_logits

    device = _device(spec)
    precision = spec["precision"]  # "bf16" or "fp32"
    config = resolve_config(preset="gpu").teacher
    lora = LoraConfig(rank=config.lora.rank, alpha=config.lora.alpha, targets=tuple(config.lora.targets))
    trainer_log = _watch_trainer()
    runs, infer = [], []
    for size in spec["sizes"]:
        start = time.perf_counter()
        model = apply_lora(load_pretrained_segmenter(spec["checkpoint"], input_size=size, num_classes=CLASSES), lora)
        load_s = time.perf_counter() - start
        parameters = trainable_parameter_report(model)
        pool = _teacher_pool(size)
        for batch in spec["batches"]:
            row: dict[str, Any] = {"input_size": size, "batch": batch, "precision": precision, "load_s": load_s}
            try:
                warmup, repeats = spec["train_steps"]
                engine = dataclasses.replace(
                    config.train, batch_size=batch, grad_accum_steps=1, max_steps=warmup + repeats, warmup_steps=0,
                    checkpoint_every=10**9, validate_every=10**9, log_every=10**9, num_workers=0, device=device,
                    mixed_precision="bf16" if precision == "bf16" else "no")
                task = TeacherTask.from_config(config, num_classes=CLASSES)
                stamps: list[float] = []
                _reset_peak(device)
                with tempfile.TemporaryDirectory(prefix="tskd-gpu-check-teacher-") as tmp:
                    Trainer(model=model, task=task, train_dataset=pool, config=engine, out_dir=tmp, stage="teacher",
                            on_step=lambda step, logs: stamps.append(time.perf_counter())).fit()
                timing = summarise(_step_times(stamps, warmup), warmup)
                row.update(seconds_per_step=timing["median_s"], images_per_s=batch / timing["median_s"],
                           step_times_s=timing["times_s"], peak_gpu_allocated_mib=_peak_mib(device),
                           trained_as=trainer_log.stages.get("teacher"))
            except Exception as exc:  # e.g. out of GPU memory at 1024 x 8: the other rows still run
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if device == "cuda":
                    torch.cuda.empty_cache()
            runs.append(row)
        if spec.get("inference"):
            model = model.to(device).eval()
            x = torch.randn(1, 1, size, size, device=device)
            _reset_peak(device)
            warmup, repeats = spec["infer_calls"]
            for _ in range(warmup):
                teacher_logits(model, x)
            _sync(device)
            times = []
            for _ in range(repeats):
                begin = time.perf_counter()
                teacher_logits(model, x)
                _sync(device)
                times.append(time.perf_counter() - begin)
            timing = summarise(times, warmup)
            infer.append({"input_size": size, "batch": 1, "precision": "fp32", "ms_per_image": 1000 * timing["median_s"],
                          "times_s": timing["times_s"], "peak_gpu_allocated_mib": _peak_mib(device)})
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"device": device, "precision": precision, "architecture": spec["architecture"],
            "checkpoint": spec["checkpoint"], "lora": dataclasses.asdict(lora), "parameters": parameters,
            "train": runs, "inference": infer}


# ----------------------------------------------------------------------------------- diffusion
def section_diffusion(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``gpu`` preset's U-Net (``image_size`` from the spec): engine training steps, and sampling
    with the preset's sampler and steps (``measured_steps`` fewer on --quick, scaled and marked)."""
    import torch

    from tskd.engine import Trainer
    from tskd.runconfig import resolve_config
    from tskd.synthesis.model import build_diffusion_model
    from tskd.synthesis.sampler import generate
    from tskd.synthesis.task import DiffusionTask

    device = _device(spec)
    config = resolve_config(preset=spec["preset"], overrides={"synthesis": {"image_size": spec["image_size"]}}).synthesis
    torch.manual_seed(0)
    model = build_diffusion_model(config)
    trainer_log = _watch_trainer()
    warmup, repeats = spec["train_steps"]
    batch = spec["train_batch"] or config.train.batch_size
    engine = dataclasses.replace(
        config.train, batch_size=batch, grad_accum_steps=1, max_steps=warmup + repeats, warmup_steps=0,
        checkpoint_every=10**9, validate_every=10**9, log_every=10**9, num_workers=0, device=device,
        mixed_precision="auto")
    generator = torch.Generator().manual_seed(0)
    pool = [{"image": torch.randn((1, config.image_size, config.image_size), generator=generator)} for _ in range(8)]
    stamps: list[float] = []
    _reset_peak(device)
    with tempfile.TemporaryDirectory(prefix="tskd-gpu-check-diffusion-") as tmp:
        Trainer(model=model.unet, task=DiffusionTask.for_model(model), train_dataset=pool, config=engine, out_dir=tmp,
                stage="synthesis", on_step=lambda step, logs: stamps.append(time.perf_counter())).fit()
    timing = summarise(_step_times(stamps, warmup), warmup)
    train = {"batch": batch, "seconds_per_step": timing["median_s"], "images_per_s": batch / timing["median_s"],
             "step_times_s": timing["times_s"], "peak_gpu_allocated_mib": _peak_mib(device),
             "trained_as": trainer_log.stages.get("synthesis")}

    sample_batch = spec["sample_batch"] or config.sample_batch_size
    steps = config.sampling_steps
    measured = min(spec.get("measured_steps") or steps, steps)
    _reset_peak(device)
    generate(model, sample_batch, steps=1, sampler=config.sampler, device=device, batch_size=sample_batch)  # warm-up
    _sync(device)
    times = []
    for _ in range(spec["sample_repeats"]):
        begin = time.perf_counter()
        generate(model, sample_batch, steps=measured, sampler=config.sampler, device=device, batch_size=sample_batch)
        _sync(device)
        times.append(time.perf_counter() - begin)
    seconds = statistics.median(times) * steps / measured
    sample = {"batch": sample_batch, "sampler": config.sampler, "steps": steps, "measured_steps": measured,
              "extrapolated": measured != steps, "seconds_per_batch": seconds, "images_per_s": sample_batch / seconds,
              "times_s": times, "precision": "fp32", "peak_gpu_allocated_mib": _peak_mib(device)}
    return {"device": device, "preset": spec["preset"], "image_size": config.image_size,
            "parameters": sum(p.numel() for p in model.unet.parameters()),
            "block_out_channels": list(config.block_out_channels), "train": train, "sample": sample}


# ----------------------------------------------------------------------------------- students
def section_students(spec: dict[str, Any]) -> dict[str, Any]:
    """Each student: ms per slice (batch 1 and 16) and seconds per volume, torch on the device and
    onnxruntime (its CPU provider unless it has CUDA's), through a real exported student package."""
    import numpy as np
    import onnxruntime
    import torch

    from tskd.data.labels import LabelTable
    from tskd.export import write_student_package
    from tskd.inference.torch_model import TorchSliceModel
    from tskd.preprocess import NormalizationSpec
    from tskd.runtime import OnnxSegmenter, physical_cores, segment_volume
    from tskd.student import build_student, count_parameters

    device = _device(spec)
    size, depth = spec["slice_size"], spec["volume_slices"]
    providers = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else None
    rng = np.random.default_rng(0)
    volume = (1000 * rng.random((depth, size, size))).astype(np.int16)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tskd-gpu-check-students-") as tmp:
        for name in spec["students"]:
            torch.manual_seed(0)
            model = build_student(name, num_classes=CLASSES, input_size=size).eval()
            normalization = NormalizationSpec(mode="percentile")
            folder = write_student_package(Path(tmp) / name, student=model, labels=LabelTable.default(range(CLASSES)),
                                           input_size=size, slice_axis=0, normalization=normalization,
                                           teacher_info=None, metrics=None)
            runners = {
                f"torch_{device}": TorchSliceModel(model.to(device), input_size=size, label_values=list(range(CLASSES)),
                                                   normalization=normalization, slice_axis=0, device=device),
                "onnxruntime": OnnxSegmenter(folder, threads=physical_cores(), providers=providers),
            }
            row: dict[str, Any] = {"parameters": count_parameters(model)}
            for backend, runner in runners.items():
                for batch in (1, 16):
                    x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
                    for _ in range(2):
                        runner.logits(x)
                    times = []
                    for _ in range(spec["repeats"] if batch == 1 else max(1, spec["repeats"] // 4)):
                        begin = time.perf_counter()
                        runner.logits(x)  # returns numpy: the device's work is finished
                        times.append(time.perf_counter() - begin)
                    row[f"{backend}_ms_per_slice_batch{batch}"] = 1000 * statistics.median(times) / batch
                begin = time.perf_counter()
                segment_volume(runner, volume, batch_size=16)
                row[f"{backend}_volume_s"] = time.perf_counter() - begin
            row["onnxruntime_providers"] = list(getattr(runners["onnxruntime"], "providers", []) or [])
            results[name] = row
    return {"device": device, "slice": [size, size], "volume": [size, size, depth], "students": results,
            "onnxruntime_available_providers": onnxruntime.get_available_providers()}


# ----------------------------------------------------------------------------------- train
def section_train(spec: dict[str, Any]) -> dict[str, Any]:
    """``tskd train --preset P --config CAPS --base OFFICIAL.pth`` (its functions, as the command
    calls them) on the HC18 subset; per-stage step rates from the progress events. Stops cleanly at
    the parent's cancel file and still reports the stages it measured."""
    import torch

    from tskd.errors import CancelledError
    from tskd.runconfig import resolve_config
    from tskd.pipeline.run import run_stages

    device = _device(spec)
    trainer_log, recorder = _watch_trainer(), StepRecorder()
    config = resolve_config(preset=spec["preset"], config_file=spec["config"], overrides=spec.get("overrides"),
                            max_steps=spec.get("max_steps"), base=spec["checkpoint"])
    out = Path(spec["workdir"]) / "train-run"
    _reset_peak(device)
    start = time.monotonic()
    state, summary, error = "done", {}, None
    try:
        summary = run_stages(spec["data"], out, config, progress=recorder.reporter, cancel_file=spec["cancel_file"])
    except CancelledError as exc:
        state, error = "stopped at the section's time cap", str(exc)
    wall = time.monotonic() - start
    rates = recorder.stage_rates()
    loops = sum(r["loop_s"] for r in rates.values())
    result = {
        "command": f"tskd train --preset {spec['preset']} --config {spec['config']} --base {spec['checkpoint']} "
                   f"--data {spec['data']}" + (f" --max-steps {spec['max_steps']}" if spec.get("max_steps") else "")
                   + (f" (settings changed: {spec['overrides']})" if spec.get("overrides") else ""),
        "preset": spec["preset"], "state": state, "stopped": error, "wall_s": wall, "training": trainer_log.stages,
        "peak_gpu_allocated_mib": _peak_mib(device), "cuda_used": device == "cuda" and torch.cuda.max_memory_allocated() > 0,
        "stage_rates": {k: {x: v for x, v in r.items() if not x.endswith("_event_t")} for k, r in rates.items()},
        "outside_training_loops_s": wall - loops,
        "capped": {name: engine.max_steps for name, engine in stage_engines(config).items()},
        "data_summary": summary.get("data_summary"),
    }
    gap = _transfer_gap(rates)
    if gap is not None:
        result["transfer_set_s"] = gap  # sampling, quality gate and teacher labelling of the transfer set
    if summary:
        result["comparison"] = {k: summary.get(k) for k in ("distilled", "reference", "chosen", "verdict")}
    return result


def stage_engines(config) -> dict[str, Any]:
    """The training loops ``tskd train`` runs, by stage name (reference: distill's settings, both budgets)."""
    engines = {"teacher": config.teacher.train, "synthesis": config.synthesis.train, "distill": config.distill.train,
               "finetune": config.finetune.train}
    if not config.synthesis.enabled:
        engines.pop("synthesis")
    if config.reference.enabled:
        engines["reference"] = dataclasses.replace(
            config.distill.train, max_steps=config.distill.train.max_steps + config.finetune.train.max_steps)
    return engines


def _transfer_gap(rates: dict[str, dict[str, Any]]) -> float | None:
    if "synthesis" in rates and "distill" in rates:
        return rates["distill"]["first_event_t"] - rates["synthesis"]["last_event_t"]
    return None


def section_checkpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """The official-layout SAM file the teacher and train sections load (``--base``)."""
    return write_official_sam(Path(spec["checkpoint"]), spec["architecture"])


SECTIONS = {"machine": section_machine, "demo": section_demo, "checkpoint": section_checkpoint, "teacher": section_teacher,
            "diffusion": section_diffusion, "students": section_students, "train": section_train}


def run_section(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one section in this process; an exception becomes ``{"error": ...}`` (with its last lines)."""
    import traceback

    import torch

    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # the engine's INFO records are collected (TrainerLog), not shown
    logging.getLogger().addHandler(console)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    os.environ.setdefault("TSKD_HOME", str(Path(spec["workdir"]) / "tskd-home"))
    start = time.perf_counter()
    try:
        result = SECTIONS[spec["section"]](spec)
    except Exception as exc:  # recorded, never fatal: the other sections still run
        lines = traceback.format_exc().strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  "traceback_tail": lines[-8:]}
    result["section_s"] = time.perf_counter() - start
    return result
