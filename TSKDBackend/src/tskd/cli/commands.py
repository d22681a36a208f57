"""The list of command groups, in the order ``tskd --help`` shows them."""

from __future__ import annotations

from tskd.cli import (
    batch_cmd,
    benchmark_cmd,
    data_cmd,
    demo_cmd,
    evaluate_cmd,
    foundation_cmd,
    predict_cmd,
    segment_box_cmd,
    presets_cmd,
    serve_cmd,
    suggest_cmd,
    synth_cmd,
    teacher_cmd,
    train_cmd,
)

REGISTRY = [
    demo_cmd.register,
    data_cmd.register,
    train_cmd.register,
    batch_cmd.register,
    predict_cmd.register,
    segment_box_cmd.register,
    suggest_cmd.register,
    evaluate_cmd.register,
    benchmark_cmd.register,
    serve_cmd.register,
    foundation_cmd.register,
    teacher_cmd.register,
    synth_cmd.register,
    presets_cmd.register,
]
