"""``/projects/{id}/cases``: upload (multipart, streamed), list, read, download and delete cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tskd.service.casefiles import check_case
from tskd.service.core import Service
from tskd.service.errors import BadRequest, ServiceError
from tskd.service.projects import label_table
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import CaseList, CaseOut
from tskd.service.storage import CASE_NAME_PATTERN, check_case_name, remove_path
from tskd.service.uploads import discard_body, receive_form

__all__ = ["router"]

router = APIRouter(prefix="/projects/{project_id}/cases", tags=["cases"])

_NAME_RULE = {"type": "string", "pattern": CASE_NAME_PATTERN, "minLength": 1, "maxLength": 64}
#: The case name in a path: checked by :func:`check_case_name` (a 400 that says what is allowed).
CaseName = Annotated[str, Path(description="case name: 1-64 letters, digits, '_', '-', '.', starting with a letter "
                                           "or digit", json_schema_extra=dict(_NAME_RULE))]

_UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "image"],
                    "properties": {
                        "name": {**_NAME_RULE, "description": "case name: 1-64 letters, digits, '_', '-', "
                                 "'.', starting with a letter or digit; send it before the files"},
                        "replace": {"type": "string", "enum": ["true", "false"], "description": "replace a case "
                                    "of the same name (default false)"},
                        "image": {"type": "string", "format": "binary", "description": ".nii.gz, .nii, .nrrd, "
                                  ".mha, .png, ... (2D or 3D, one channel)"},
                        "label": {"type": "string", "format": "binary", "description": "label map on the image's "
                                  "grid (.nii.gz, .nrrd, .seg.nrrd, ...); values must be the project's labels"},
                    },
                }
            }
        },
    }
}


def _flag(value: str | None, field: str) -> bool:
    text = (value or "false").strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise BadRequest(f"form field {field!r} must be 'true' or 'false', got {value!r}")
    return text in ("true", "1", "yes")


@router.post("", status_code=201, response_model=CaseOut, openapi_extra=_UPLOAD_FORM,
             summary="Upload a case: an image and, optionally, its label map",
             responses=error_responses(401, 400, 404, 408, 409, 413, 415))
async def upload_case(project_id: str, request: Request, svc: Service = Depends(service)) -> dict:
    try:
        project = await run_in_threadpool(svc.projects.row, project_id)
    except ServiceError:
        await discard_body(request)
        raise
    folder = await run_in_threadpool(svc.workspace.new_tmp_dir, "upload")
    try:
        form = await receive_form(
            request, folder, file_fields=("image", "label"), text_fields=("name", "replace"),
            max_file_bytes=svc.settings.max_upload_bytes,
            field_checks={"name": check_case_name, "replace": lambda v: _flag(v, "replace")},
        )
        if "name" not in form.fields:
            raise BadRequest("form field 'name' is missing; send the case name (e.g. 'patient_001')")
        if "image" not in form.files:
            raise BadRequest("form field 'image' is missing; send the image file")
        name = check_case_name(form.fields["name"])
        replace = _flag(form.fields.get("replace"), "replace")
        dimension = await run_in_threadpool(svc.projects.dimension, project_id)
        if replace and dimension is not None:
            others = await run_in_threadpool(svc.cases.list, project_id)
            dimension = dimension if any(c["name"] != name for c in others) else None
        checked = await run_in_threadpool(
            lambda: check_case(form.files["image"], form.files.get("label"), table=label_table(project["labels"]),
                               dimension=dimension, max_image_bytes=svc.settings.max_image_bytes)
        )
        return await run_in_threadpool(lambda: svc.cases.add(project_id, name, checked, replace=replace))
    finally:
        await run_in_threadpool(remove_path, folder)


@router.get("", response_model=CaseList, summary="List a project's cases",
             responses=error_responses(401, 404))
def list_cases(project_id: str, svc: Service = Depends(service)) -> dict:
    svc.projects.row(project_id)
    return {"cases": svc.cases.list(project_id)}


@router.get("/{name}", response_model=CaseOut, summary="Get a case's metadata",
             responses=error_responses(401, 400, 404))
def get_case(project_id: str, name: CaseName, svc: Service = Depends(service)) -> dict:
    svc.projects.row(project_id)
    return svc.cases.get(project_id, name)


@router.get("/{name}/image", response_class=FileResponse, summary="Download a case's image (.nii.gz)",
             responses=error_responses(401, 400, 404))
def download_image(project_id: str, name: CaseName, svc: Service = Depends(service)) -> FileResponse:
    svc.projects.row(project_id)
    path = svc.cases.file(project_id, name, "image")
    return FileResponse(path, media_type="application/gzip", filename=f"{name}.nii.gz")


@router.get("/{name}/label", response_class=FileResponse, summary="Download a case's label map (.nii.gz)",
             responses=error_responses(401, 400, 404))
def download_label(project_id: str, name: CaseName, svc: Service = Depends(service)) -> FileResponse:
    svc.projects.row(project_id)
    path = svc.cases.file(project_id, name, "label")
    return FileResponse(path, media_type="application/gzip", filename=f"{name}.nii.gz")


@router.delete("/{name}", status_code=204, summary="Delete a case",
             responses=error_responses(401, 400, 404, 409))
def delete_case(project_id: str, name: CaseName, svc: Service = Depends(service)) -> Response:
    svc.projects.row(project_id)
    svc.cases.delete(project_id, name)
    return Response(status_code=204)
