"""onnxruntime's default thread count: the physical cores, at most ``OMP_NUM_THREADS`` when set."""

from __future__ import annotations

import pytest

from tskd.runtime import OnnxSegmenter, default_threads, session


@pytest.mark.parametrize("value, expected", [(None, 4), ("1", 1), ("2", 2), ("16", 4), ("0", 1), ("", 4),
                                             ("4,2", 4), ("many", 4)])
def test_default_threads_follow_omp_num_threads_up_to_the_cores(monkeypatch, value, expected):
    monkeypatch.setattr(session, "physical_cores", lambda: 4)
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_threads() == expected


def test_a_segmenter_without_threads_takes_the_default_and_an_explicit_count_wins(monkeypatch, package_014):
    monkeypatch.setattr(session, "physical_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model = OnnxSegmenter(package_014[0])
    assert model.threads == 1 and model.session.get_session_options().intra_op_num_threads == 1
    assert OnnxSegmenter(package_014[0], threads=2).threads == 2
