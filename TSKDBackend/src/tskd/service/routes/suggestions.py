"""``/projects/{id}/suggestions``: what to label next, computed in the background and cached."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Response

from tskd.service.core import Service
from tskd.service.errors import error_responses
from tskd.service.routes.deps import service
from tskd.service.schemas import SuggestionsOut
from tskd.service.suggestions import MAX_TOP, RETRY_AFTER_S
from tskd.suggest import SuggestConfig

__all__ = ["router"]

router = APIRouter(tags=["suggestions"])

_COMPUTING = {
    202: {"model": SuggestionsOut,
          "description": "computing: the suggestions are being computed; ask again after Retry-After seconds",
          "headers": {"Retry-After": {"description": "seconds to wait before asking again",
                                      "schema": {"type": "integer"}}}},
}


@router.get("/projects/{project_id}/suggestions", response_model=SuggestionsOut,
            summary="The unlabelled cases' slices most worth labelling next (202 while being computed)",
            responses={**error_responses(401, 404, 409, 503), **_COMPUTING})
def get_suggestions(
    project_id: str,
    response: Response,
    model_id: Optional[str] = Query(None, description="a model of the project (default: its latest)"),
    top: int = Query(SuggestConfig().top, ge=1, le=MAX_TOP, description="number of suggested slices"),
    teacher: bool = Query(True, description="add the teacher-student disagreement when the run has a teacher"),
    retry: bool = Query(False, description="compute again when the cached answer is a failure (send it once, "
                                           "not while polling)"),
    svc: Service = Depends(service),
) -> dict:
    svc.projects.row(project_id)
    request = svc.suggestions.resolve(project_id, model_id, top, teacher)
    answer = svc.suggestions.get(request, retry=retry)
    if answer["status"] == "computing":
        response.status_code = 202
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer
