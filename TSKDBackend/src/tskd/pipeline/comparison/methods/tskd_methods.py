"""TS-KD itself and its ablation without synthetic images, as benchmark methods.

Both run the pipeline's own stages (teacher, synthesis + transfer set, distillation, fine-tuning,
export). ``tskd_no_synth`` differs only by ``synthesis.enabled: false``: its transfer set holds the
real training images (labelled and unlabelled) alone. The split, the prepared slices and the
fine-tuned teacher are the same as TS-KD's (the benchmark shares them).

Both turn off the run's supervised reference (``reference.enabled: false``): the benchmark scores
the distilled student itself, and the reference is its own row (``labelled_only``, the same stage).
"""

from __future__ import annotations

from tskd.runconfig import PipelineConfig
from tskd.pipeline.comparison.methods.base import Method, with_changes

__all__ = ["TSKD", "TSKD_NO_SYNTH"]


_NO_REFERENCE = {"reference": {"enabled": False}}


def _tskd(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    note = "" if config.synthesis.enabled else "synthesis disabled in the config: real images only"
    return with_changes(config, _NO_REFERENCE, why="tskd"), note


def _no_synth(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    return with_changes(config, {"synthesis": {"enabled": False}, **_NO_REFERENCE}, why="tskd_no_synth"), ""


TSKD = Method(
    name="tskd",
    title="TS-KD: fine-tuned teacher, transfer set with synthetic images, distil, fine-tune",
    needs_teacher=True,
    configure=_tskd,
)

TSKD_NO_SYNTH = Method(
    name="tskd_no_synth",
    title="TS-KD without synthetic images (ablation)",
    needs_teacher=True,
    configure=_no_synth,
)
