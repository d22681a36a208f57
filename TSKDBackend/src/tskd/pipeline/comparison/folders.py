"""The benchmark folder: shared stages, one run folder per method, results.

::

    OUT/
      split.json            train / val / unlabelled / test case ids (test: held-out subjects)
      shared/               a run folder with the data stage and, when a method needs it, the
                            fine-tuned teacher (trained once) and its reference row
                            (benchmark_teacher_result.json)
      runs/<method>/        each method's run folder; prepared/ and teacher/ are hard links to
                            shared/ (a copy where the file system has no hard links)
      runs/<method>/benchmark_result.json   test metrics and timing (written last: method done)
      runs/<method>/benchmark_error.json    the last failure, if the method failed
      results.md / results.csv / results.json / results.png
      log.txt
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from tskd.pipeline.run_folder import RunFolder

__all__ = ["BenchmarkFolder", "link_tree", "share_stage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkFolder:
    """Paths of one benchmark. Nothing is created until written."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    split = property(lambda self: self.root / "split.json")
    shared = property(lambda self: RunFolder(self.root / "shared"))
    log = property(lambda self: self.root / "log.txt")
    results_md = property(lambda self: self.root / "results.md")
    results_csv = property(lambda self: self.root / "results.csv")
    results_json = property(lambda self: self.root / "results.json")
    results_png = property(lambda self: self.root / "results.png")

    def run(self, method: str) -> RunFolder:
        """The run folder of ``method``."""
        return RunFolder(self.root / "runs" / method)

    def result(self, method: str) -> Path:
        return self.run(method).root / "benchmark_result.json"

    def error(self, method: str) -> Path:
        return self.run(method).root / "benchmark_error.json"

    @property
    def teacher_result(self) -> Path:
        """The shared teacher's reference row (test metrics)."""
        return self.root / "shared" / "benchmark_teacher_result.json"


def link_tree(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Recreate the folder ``src`` at ``dst`` with hard links (copies where links fail), built under
    a temporary name and renamed at the end. Top-level entries named in ``skip`` are left out."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder to share")
    work = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(src, work, copy_function=link, ignore=lambda folder, names: [
        n for n in names if Path(folder) == src and n in skip])
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(work, dst)


def share_stage(source: RunFolder, target: RunFolder, folder: str, marker: str) -> bool:
    """Give ``target`` the finished stage folder ``folder`` of ``source`` (hard links).

    Args:
        source: the run folder where the stage ran.
        target: a method's run folder.
        folder: the stage folder's name (``prepared``, ``teacher``).
        marker: the file that exists once the stage is complete (``index.json``, ``stage.json``).

    Returns:
        True when linked now, False when ``target`` already had the complete stage.
    """
    if (target.root / folder / marker).is_file():
        return False
    if not (source.root / folder / marker).is_file():
        raise FileNotFoundError(f"{source.root / folder}: the stage has not finished there; nothing to share")
    link_tree(source.root / folder, target.root / folder, skip=("checkpoints",))
    logger.info("benchmark: %s/%s shared from %s", target.root.name, folder, source.root)
    return True
