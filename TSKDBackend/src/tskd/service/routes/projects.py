"""``/projects``: create, list, read, change and delete projects."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from tskd.service.core import Service
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import ProjectCreate, ProjectList, ProjectOut, ProjectUpdate

__all__ = ["router"]

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectOut, summary="Create a project",
             responses=error_responses(400, 401, 409))
def create_project(body: ProjectCreate, svc: Service = Depends(service)) -> dict:
    return svc.projects.create(body.name, [label.model_dump() for label in body.labels], body.settings)


@router.get("", response_model=ProjectList, summary="List projects",
             responses=error_responses(401))
def list_projects(svc: Service = Depends(service)) -> dict:
    return {"projects": svc.projects.list()}


@router.get("/{project_id}", response_model=ProjectOut, summary="Get a project",
             responses=error_responses(401, 404))
def get_project(project_id: str, svc: Service = Depends(service)) -> dict:
    return svc.projects.get(project_id)


@router.patch("/{project_id}", response_model=ProjectOut, summary="Rename, change labels or settings",
             responses=error_responses(400, 401, 404, 409))
def update_project(project_id: str, body: ProjectUpdate, svc: Service = Depends(service)) -> dict:
    labels = [label.model_dump() for label in body.labels] if body.labels is not None else None
    return svc.projects.update(project_id, name=body.name, labels=labels, settings=body.settings)


@router.delete("/{project_id}", status_code=204, summary="Delete a project, its cases, jobs and models",
             responses=error_responses(401, 404, 409))
def delete_project(project_id: str, svc: Service = Depends(service)) -> Response:
    svc.projects.delete(project_id)
    return Response(status_code=204)
