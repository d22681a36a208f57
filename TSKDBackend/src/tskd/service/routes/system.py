"""``/health`` (no token needed) and ``/info``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tskd import __version__
from tskd.service.core import Service
from tskd.service.info import device_info, list_presets
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import HealthOut, InfoOut
from tskd.service.settings import API_PREFIX

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut, summary="Is the server up (needs no token)",
            responses=error_responses(validation=False))
def health() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/info", response_model=InfoOut, summary="Version, compute device, base checkpoints, presets",
             responses=error_responses(401))
def info(svc: Service = Depends(service)) -> dict:
    return {
        "version": __version__,
        "api": API_PREFIX,
        "device": device_info(),
        "checkpoints": svc.checkpoints.present(),
        "presets": list_presets(),
        "limits": {"max_upload_mb": svc.settings.max_upload_mb, "max_image_mb": svc.settings.max_image_mb,
                   "max_weights_upload_mb": svc.settings.max_weights_upload_mb},
        "jobs": {"max_concurrent": svc.settings.max_concurrent_jobs,
                 "cancel_grace_s": svc.settings.cancel_grace_s},
    }
