"""Trained students: list per project, metadata, ``.tskd.zip`` download, server-side prediction."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from tskd.data.image import image_suffix, write_image
from tskd.errors import ConfigError
from tskd.inference.predict import parse_roi
from tskd.runtime.inference import resolve_roi
from tskd.service.casefiles import read_upload_image
from tskd.service.core import Service
from tskd.service.errors import BadRequest, ServiceError
from tskd.service.inference import segment_image
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import ModelList, ModelOut
from tskd.service.storage import remove_path
from tskd.service.uploads import discard_body, receive_form

__all__ = ["router"]

router = APIRouter(tags=["models"])

_PREDICT_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary",
                                     "description": "2D or 3D image (.nii.gz, .nrrd, .mha, .png, ...)"},
                           "roi": {"type": "string",
                                   "description": "optional box in numpy index bounds, k0:k1,j0:j1,i0:i1 (as "
                                                  "tskd predict --roi): only it is segmented, the rest is 0"}},
        }}},
    }
}


@router.get("/projects/{project_id}/models", response_model=ModelList,
            summary="The students of a project (one per finished job) with their metrics",
             responses=error_responses(401, 404))
def list_models(project_id: str, svc: Service = Depends(service)) -> dict:
    svc.projects.row(project_id)
    return {"models": svc.models.list(project_id)}


@router.get("/models/{model_id}", response_model=ModelOut, summary="A model's metadata (tskd-model.json)",
             responses=error_responses(401, 404))
def get_model(model_id: str, svc: Service = Depends(service)) -> dict:
    return svc.models.get(model_id)


@router.get("/models/{model_id}/download", response_class=FileResponse,
            summary="The student package as a .tskd.zip (model.onnx, tskd-model.json, ...)",
             responses=error_responses(401, 404))
def download_model(model_id: str, svc: Service = Depends(service)) -> FileResponse:
    archive = svc.models.archive(model_id)
    return FileResponse(archive, media_type="application/zip", filename=f"model-{model_id}.tskd.zip")


@router.get("/models/{model_id}/box-model", response_class=FileResponse,
            summary="The run's task-tuned teacher as an ONNX box model for box-to-mask (a zip: box_encoder.onnx, "
                    "box_decoder.onnx, box_model.json); 404 when the run exported none",
            responses=error_responses(401, 404))
def model_box_model(model_id: str, svc: Service = Depends(service)) -> FileResponse:
    archive = svc.box_models.model_archive(model_id)
    return FileResponse(archive, media_type="application/zip", filename=f"model-{model_id}-box-model.zip")


@router.post("/models/{model_id}/predict", response_class=FileResponse, openapi_extra=_PREDICT_FORM,
             summary="Segment an uploaded image; the label map comes back in its format and geometry",
             responses=error_responses(401, 400, 404, 408, 413, 415))
async def predict(model_id: str, request: Request, svc: Service = Depends(service)) -> FileResponse:
    try:
        package = await run_in_threadpool(svc.models.package_dir, model_id)
    except ServiceError:
        await discard_body(request)
        raise
    folder = await run_in_threadpool(svc.workspace.new_tmp_dir, "predict")
    try:
        form = await receive_form(request, folder, file_fields=("image",), text_fields=("roi",),
                                  max_file_bytes=svc.settings.max_upload_bytes)
        if "image" not in form.files:
            raise BadRequest("form field 'image' is missing; send the image file")
        try:
            roi = parse_roi(form.fields.get("roi"))
        except ConfigError as exc:
            raise BadRequest(f"form field 'roi': {exc}") from None
        upload = form.files["image"]
        suffix = image_suffix(upload.filename)
        out_suffix = ".nrrd" if suffix == ".seg.nrrd" else suffix

        def run() -> Path:
            image = read_upload_image(upload, svc.settings.max_image_bytes)
            if roi is not None:
                try:
                    resolve_roi(roi, image.array.shape)
                except ValueError as exc:
                    raise BadRequest(f"form field 'roi' does not fit the image of shape {image.array.shape}: {exc}") from None
            label = segment_image(svc.students.get(package), image, roi=roi)
            return write_image(label, folder / f"label{out_suffix}")

        result = await run_in_threadpool(run)
    except BaseException:
        await run_in_threadpool(remove_path, folder)
        raise
    stem = upload.filename[: -len(suffix)] if suffix else upload.filename
    return FileResponse(result, media_type="application/octet-stream", filename=f"{stem}-label{out_suffix}",
                        background=BackgroundTask(remove_path, folder))
