"""The service object: the workspace, its database and the components the routes use."""

from __future__ import annotations

import logging

from tskd.service.boxmodels import BoxModels
from tskd.service.cases import Cases
from tskd.service.checkpoints import Checkpoints
from tskd.service.db import Database
from tskd.service.inference import StudentSessions
from tskd.service.jobs import Jobs
from tskd.service.projects import Projects
from tskd.service.registry import Models
from tskd.service.settings import ServiceSettings
from tskd.service.storage import Workspace
from tskd.service.suggestions import Suggestions
from tskd.service.workers import Scheduler

__all__ = ["Service"]

logger = logging.getLogger(__name__)


class Service:
    """Everything one server holds, opened on a workspace.

    Opening takes the workspace's lock (one server per workspace), opens (or creates, or
    migrates) the database, empties ``tmp/`` and removes files that interrupted writes left
    without a database row. :meth:`start` recovers the previous server's jobs and downloads and starts the
    scheduler; :meth:`close` stops it (workers keep running) and releases everything.

    Args:
        settings: the service settings.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        self.workspace.acquire()
        try:
            self.db = Database(self.workspace.db_path)
            self.workspace.clean_tmp()
            self.projects = Projects(self.db, self.workspace)
            self.projects.remove_orphans()
            self.cases = Cases(self.db, self.workspace)
            self.models = Models(self.db, self.workspace)
            self.checkpoints = Checkpoints(settings, self.db, self.workspace)
            self.box_models = BoxModels(self.workspace, self.checkpoints, self.models)
            self.scheduler = Scheduler(settings, self.db, self.workspace, self.models, self.checkpoints)
            self.jobs = Jobs(self.db, self.workspace, self.checkpoints, wake=self.scheduler.wake,
                             log_tail_lines=settings.log_tail_lines, check_settings=settings.check_job_settings)
            self.students = StudentSessions()
            self.suggestions = Suggestions(self.db, self.workspace, self.models,
                                           max_queued=settings.max_queued_suggestions)
        except BaseException:
            self.workspace.release()
            raise
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.scheduler.start()
            self.checkpoints.start()
            self.suggestions.start()
            self._started = True

    def close(self) -> None:
        if self._started:
            self.scheduler.stop()
            self.checkpoints.stop()
            self.suggestions.stop()
            self._started = False
        self.db.close()
        self.workspace.release()
