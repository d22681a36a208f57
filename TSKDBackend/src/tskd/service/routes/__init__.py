"""The HTTP routes, one module per resource; :data:`ROUTERS` lists them in the order the docs show them."""

from __future__ import annotations

from tskd.service.routes import cases, checkpoints, jobs, models, projects, suggestions, system

__all__ = ["ROUTERS"]

ROUTERS = [system.router, projects.router, cases.router, jobs.router, models.router, suggestions.router, checkpoints.router]
