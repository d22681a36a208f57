"""What ``tskd train`` itself does, as a benchmark method: the row a user's default run gets.

TS-KD's stages as the config says (synthesis included only where the config turns it on), the
supervised reference trained beside them (``reference.enabled`` as configured: on by default) and
the export of whichever of the two students scored better on the validation subjects
(:mod:`tskd.pipeline.choice`). Its test Dice is the exported model's, its training time includes
the reference, and its note says which student was exported. The other methods isolate one part
(``tskd`` without the reference, ``labelled_only`` the reference alone); this one measures the
defaults.
"""

from __future__ import annotations

from tskd.runconfig import PipelineConfig
from tskd.pipeline.comparison.methods.base import Method

__all__ = ["TSKD_TRAIN"]


def _as_configured(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    parts = ["synthesis on" if config.synthesis.enabled else "synthesis off",
             "with the supervised reference" if config.reference.enabled else "reference off"]
    return config, "as `tskd train` runs: " + ", ".join(parts)


TSKD_TRAIN = Method(
    name="tskd_train",
    title="what `tskd train` runs: TS-KD and the supervised reference, the better one exported",
    needs_teacher=True,
    configure=_as_configured,
)
