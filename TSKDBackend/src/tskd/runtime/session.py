"""Running a student package's ONNX model with onnxruntime.

:class:`OnnxSegmenter` holds one ``onnxruntime.InferenceSession`` and the package's metadata, and
is a :class:`tskd.runtime.inference.SliceModel`: ``segment_volume(OnnxSegmenter(pkg), volume)``.
onnxruntime is imported when a segmenter is made, so importing this module costs nothing.

Standard library, numpy and onnxruntime only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ..errors import CheckpointError
from ..preprocess import NormalizationSpec
from .package import PackageError, StudentPackage

__all__ = ["OnnxSegmenter", "physical_cores", "resolve_providers"]

logger = logging.getLogger(__name__)

_PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _linux_physical_cores() -> Optional[int]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    cores = set()
    physical = core = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if core is not None:
                cores.add((physical, core))
            physical = core = None
        elif line.startswith("physical id"):
            physical = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
    return len(cores) or None


def _mac_physical_cores() -> Optional[int]:
    try:
        out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads not counted; at least 1).

    Counts cores from ``/proc/cpuinfo`` (Linux) or ``sysctl`` (macOS), bounded by the CPUs the
    process is allowed to run on; falls back to ``os.cpu_count()``.
    """
    logical = os.cpu_count() or 1
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    system = platform.system()
    physical = _linux_physical_cores() if system == "Linux" else _mac_physical_cores() if system == "Darwin" else None
    if physical is None:
        physical = logical
    return max(1, min(physical, allowed))


def default_threads() -> int:
    """onnxruntime's CPU threads when none are asked for: the physical cores (:func:`physical_cores`), but at
    most ``OMP_NUM_THREADS`` when that is set to a whole number (the limit torch and the BLAS libraries follow).

    A process limited that way (one of several test workers, a job beside others) then does not run
    onnxruntime's spinning threads against its neighbours: a phantom volume segmented with 2 threads instead
    of 1 on a loaded 2-core machine took twice the CPU time (1.03 s vs 0.51-0.61 s for 20 volumes) and was
    no faster (2026-12-06, cpu-2c).
    """
    cores = physical_cores()
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:  # unset, empty or not a number (OpenMP's lists such as "4,2"): not a limit here
        return cores
    return max(1, min(cores, limit))


def resolve_providers(providers: Optional[Union[str, Sequence[str]]] = None) -> List[str]:
    """onnxruntime execution providers to use, in preference order, always ending with the CPU.

    Args:
        providers: None (CPU), ``"cpu"``, ``"cuda"`` / ``"auto"`` (CUDA when onnxruntime has it), or a
            list of provider names (``"CUDAExecutionProvider"``...). Unavailable ones are dropped
            with a warning.
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if providers is None:
        wanted = ["CPUExecutionProvider"]
    elif isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif key in _PROVIDER_ALIASES:
            wanted = [_PROVIDER_ALIASES[key], "CPUExecutionProvider"]
        else:
            wanted = [providers, "CPUExecutionProvider"]
    else:
        wanted = [_PROVIDER_ALIASES.get(p.lower(), p) for p in providers] + ["CPUExecutionProvider"]
    chosen = []
    for name in wanted:
        if name in chosen:
            continue
        if name in available:
            chosen.append(name)
        elif providers not in (None, "auto") and name != "CPUExecutionProvider":
            logger.warning("onnxruntime provider %s is not available here (%s); using the CPU", name, ", ".join(available))
    return chosen or ["CPUExecutionProvider"]


class OnnxSegmenter:
    """A student package's ONNX model, ready to segment slices (a ``SliceModel``).

    Args:
        package: a :class:`StudentPackage`, or a path :meth:`StudentPackage.load` accepts.
        threads: CPU threads for onnxruntime (default: :func:`default_threads`, the physical cores, at most
            ``OMP_NUM_THREADS``).
        providers: execution providers (see :func:`resolve_providers`); default the CPU.

    Raises:
        PackageError: the package is invalid, or its ONNX graph does not match its metadata.
    """

    def __init__(
        self,
        package: Union[StudentPackage, str, "os.PathLike[str]"],
        *,
        threads: Optional[int] = None,
        providers: Optional[Union[str, Sequence[str]]] = None,
    ) -> None:
        import onnxruntime as ort

        self.package = package if isinstance(package, StudentPackage) else StudentPackage.load(package)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = int(threads) if threads is not None else default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.providers = resolve_providers(providers)
        path = self.package.onnx_path
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
            raise PackageError(f"{path}: onnxruntime cannot load the model ({str(exc).splitlines()[0]}); "
                               "export the package again") from None
        self._input_name = self.package.input_name
        self._output_name = self.package.output_name
        #: what :func:`segment_volume` applies after the arg-max (the package's choice)
        self.postprocessing = self.package.postprocessing
        self._check_graph()
        logger.info("loaded %s on %s with %d threads", path, self.providers[0], self.threads)

    def _check_graph(self) -> None:
        path = self.package.onnx_path
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self._input_name not in inputs or self._output_name not in outputs:
            raise PackageError(
                f"{path}: the graph's input/output are {sorted(inputs)}/{sorted(outputs)}, but the metadata "
                f"names '{self._input_name}'/'{self._output_name}'; export the package again"
            )
        shape = list(inputs[self._input_name].shape)
        size, channels = self.input_size, self.channels
        if len(shape) != 4 or shape[1] != channels or shape[2:] != [size, size]:
            raise PackageError(f"{path}: the graph's input shape {shape} is not (batch, {channels}, {size}, {size}) "
                               "as tskd-model.json says; export the package again")
        out_shape = list(outputs[self._output_name].shape)
        if len(out_shape) != 4 or (isinstance(out_shape[1], int) and out_shape[1] != self.num_classes):
            raise PackageError(f"{path}: the graph's output shape {out_shape} does not have {self.num_classes} "
                               "classes as tskd-model.json's labels say; export the package again")

    # -- SliceModel protocol ------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.package.input_size

    @property
    def num_classes(self) -> int:
        return self.package.num_classes

    @property
    def label_values(self) -> List[int]:
        return self.package.label_values

    @property
    def normalization(self) -> NormalizationSpec:
        return self.package.normalization

    @property
    def slice_axis(self) -> int:
        return self.package.slice_axis

    @property
    def context_slices(self) -> int:
        """Neighbours on either side of each slice the model sees (the package's ``input.context_slices``)."""
        return self.package.context_slices

    @property
    def channels(self) -> int:
        """Input channels: ``2 * context_slices + 1``."""
        return 2 * self.context_slices + 1

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Class logits of normalised, resized slices.

        Args:
            batch: float32 ``(B, C, S, S)``, ``C`` = :attr:`channels` (each slice between its neighbours).

        Returns:
            float32 ``(B, K, S, S)``.
        """
        batch = np.asarray(batch)
        size, channels = self.input_size, self.channels
        if batch.ndim != 4 or batch.shape[1:] != (channels, size, size):
            raise ValueError(f"expected a batch of shape (B, {channels}, {size}, {size}), got {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            (out,) = self.session.run([self._output_name], {self._input_name: batch})
        except Exception as exc:
            raise CheckpointError(f"{self.package.onnx_path}: onnxruntime failed: {str(exc).splitlines()[0]}") from None
        return out

    def __repr__(self) -> str:
        return f"OnnxSegmenter({self.package!r}, providers={self.providers}, threads={self.threads})"

    def describe(self) -> Any:
        """A short text for logs: architecture, input size, provider, threads."""
        return f"{self.package.architecture or 'student'} {self.input_size}px on {self.providers[0]} x{self.threads}"
