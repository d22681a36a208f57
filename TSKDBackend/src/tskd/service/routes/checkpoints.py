"""``/checkpoints``: the foundation weights the server has or can get; fetch (download), import, remove."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tskd.foundation.cache import WEIGHTS_NAME_PATTERN, check_weights_name
from tskd.service.core import Service
from tskd.errors import ConfigError
from tskd.service.errors import BadRequest
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import CheckpointList, CheckpointOut
from tskd.service.storage import remove_path
from tskd.service.uploads import receive_form

__all__ = ["router", "WEIGHT_SUFFIXES"]

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])

#: File endings accepted by an import.
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")

_IMPORT_FORM = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["weights"],
            "properties": {
                "name": {"type": "string", "pattern": WEIGHTS_NAME_PATTERN, "maxLength": 64, "description": "name to record the weights under (default: the catalog "
                         "name when the file is a catalog file, else the file name); 1-64 of a-z 0-9 . _ -; send "
                         "it before the file"},
                "weights": {"type": "string", "format": "binary",
                            "description": "SAM / MedSAM weights: .pth, .pt, .safetensors or .bin"},
            },
        }}},
    }
}

def _check_name(value: str) -> str:
    try:
        return check_weights_name(value)
    except ConfigError as exc:  # a malformed field: 400, as for case names
        raise BadRequest(f"form field 'name': {exc}") from None


@router.get("", response_model=CheckpointList,
            summary="Foundation models: the catalog (present or not; no GPU: LiteMedSAM first, a GPU: MedSAM ViT-B "
                    "first), imported weights, workspace files",
             responses=error_responses(401))
def list_checkpoints(svc: Service = Depends(service)) -> dict:
    return {"checkpoints": svc.checkpoints.list()}


@router.get("/{name}", response_model=CheckpointOut, summary="One checkpoint, with the state of its download",
             responses=error_responses(401, 404))
def get_checkpoint(name: str, svc: Service = Depends(service)) -> dict:
    return svc.checkpoints.get(name)


@router.get("/{name}/box-model", response_class=FileResponse,
            summary="The foundation model as an ONNX box model for box-to-mask (a zip: box_encoder.onnx, "
                    "box_decoder.onnx, box_model.json); exported once on first request (about a minute on two cores)",
            responses=error_responses(401, 404, 409, 422))
def checkpoint_box_model(name: str, svc: Service = Depends(service)) -> FileResponse:
    archive = svc.box_models.foundation_archive(name)
    return FileResponse(archive, media_type="application/zip", filename=f"{name}-box-model.zip")


@router.post("/{name}/fetch", status_code=202, response_model=CheckpointOut,
             summary="Download a catalog model in the background (resumes, verified like 'tskd foundation get')",
             responses=error_responses(401, 404, 409, 502))
def fetch_checkpoint(name: str, svc: Service = Depends(service)) -> dict:
    return svc.checkpoints.fetch(name)


@router.post("/{name}/fetch/cancel", status_code=202, response_model=CheckpointOut,
             summary="Stop a download; what was received is kept and the next fetch resumes it",
             responses=error_responses(401, 404, 409))
def cancel_fetch(name: str, svc: Service = Depends(service)) -> dict:
    return svc.checkpoints.cancel_fetch(name)


@router.post("", status_code=201, response_model=CheckpointOut, openapi_extra=_IMPORT_FORM,
             summary="Import an uploaded weights file (checked to be SAM / MedSAM before it is accepted)",
             responses=error_responses(401, 400, 408, 409, 413, 415))
async def import_checkpoint(request: Request, svc: Service = Depends(service)) -> dict:
    folder = await run_in_threadpool(svc.workspace.new_tmp_dir, "weights")
    try:
        form = await receive_form(
            request, folder, file_fields=("weights",), text_fields=("name",),
            max_file_bytes=svc.settings.max_weights_upload_bytes, field_checks={"name": _check_name},
            suffixes=WEIGHT_SUFFIXES, kind="weights", limit_option="--max-weights-upload-mb",
        )
        if "weights" not in form.files:
            raise BadRequest("form field 'weights' is missing; send the weights file (.pth or .safetensors)")
        upload = form.files["weights"]
        named = folder / upload.filename  # the client's (checked) file name gives the default name
        upload.path.rename(named)
        name = form.fields.get("name") or None
        return await run_in_threadpool(svc.checkpoints.import_file, named, name)
    finally:
        await run_in_threadpool(remove_path, folder)


@router.delete("/{name}", status_code=204, summary="Remove weights that no queued or running job uses",
             responses=error_responses(401, 404, 409))
def delete_checkpoint(name: str, svc: Service = Depends(service)) -> Response:
    svc.checkpoints.delete(name)
    return Response(status_code=204)
