"""Training jobs: ``/projects/{id}/jobs`` to start and list, ``/jobs/{id}`` to poll, cancel, resume, read logs."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from tskd.service.core import Service
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import JobCreate, JobList, JobOut

__all__ = ["router"]

router = APIRouter(tags=["jobs"])


@router.post("/projects/{project_id}/jobs", status_code=201, response_model=JobOut,
             summary="Start training on a snapshot of the project's dataset",
             responses=error_responses(400, 401, 404, 409))
def start_job(project_id: str, body: JobCreate, svc: Service = Depends(service)) -> dict:
    project = svc.projects.row(project_id)
    return svc.jobs.create(project, preset=body.preset, settings=body.settings, base=body.base,
                           update_from=body.update_from, force=body.force)


@router.get("/projects/{project_id}/jobs", response_model=JobList, summary="List a project's jobs",
             responses=error_responses(401, 404))
def list_jobs(project_id: str, svc: Service = Depends(service)) -> dict:
    svc.projects.row(project_id)
    return {"jobs": svc.jobs.list(project_id)}


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, progress, metrics and log tail",
             responses=error_responses(401, 404))
def job_status(job_id: str, svc: Service = Depends(service)) -> dict:
    return svc.jobs.get(job_id)


@router.post("/jobs/{job_id}/cancel", status_code=202, response_model=JobOut,
             summary="Cancel: the worker saves a checkpoint and stops (killed after the grace period)",
             responses=error_responses(401, 404, 409))
def cancel_job(job_id: str, svc: Service = Depends(service)) -> dict:
    return svc.jobs.cancel(job_id)


@router.post("/jobs/{job_id}/resume", status_code=202, response_model=JobOut,
             summary="Queue a failed, cancelled or interrupted job again; it continues from its checkpoint",
             responses=error_responses(401, 404, 409))
def resume_job(job_id: str, svc: Service = Depends(service)) -> dict:
    return svc.jobs.resume(job_id)


@router.get("/jobs/{job_id}/log", response_class=FileResponse,
            summary="The whole log: the worker's console output (default) or the pipeline's log.txt",
             responses=error_responses(401, 404))
def job_log(job_id: str, source: Literal["output", "run"] = "output", svc: Service = Depends(service)) -> FileResponse:
    path = svc.jobs.log_file(job_id, source)
    return FileResponse(path, media_type="text/plain; charset=utf-8", filename=f"job-{job_id}-{source}.txt")
