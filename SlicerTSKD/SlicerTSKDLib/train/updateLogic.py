"""Updating a finished model with the project's new cases instead of training from scratch (Qt-free).

The backend's ``POST /projects/{id}/jobs`` with ``update_from`` (a model id) continues that model's run
with the project's current cases: the earlier subjects keep their side of the split, the teacher and
the students start from the earlier weights and the synthetic images are reused, so it takes a
fraction of a training from scratch. The model list gives each updated model its ``lineage``.

Decisions here: whether *Update the model with the new cases* applies (:func:`updateProblem`), which
model it updates (:func:`updateSource`: the one chosen in the Segment panel, else the newest), the
lineage part of a model's title (:func:`lineageText`), and the request (:func:`startUpdate`), which
keeps the earlier job's preset and foundation model so that the earlier run fits.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

__all__ = ["NO_MODEL_YET", "NOT_CONNECTED", "JOB_RUNNING", "NO_NEW_CASES", "UPDATE_TIP", "updateProblem",
           "updateSource", "newCaseCount", "updateButtonText", "lineageText", "startUpdate"]

NO_MODEL_YET = "This project has no trained model yet: train one from scratch first."
NOT_CONNECTED = "Connect to a backend and choose a project first."
JOB_RUNNING = "A training job is running: wait for it to finish (or cancel it)."
NO_NEW_CASES = ("No case was labelled, added or corrected since this model was trained: label or correct a case "
                "first, then update.")
UPDATE_TIP = ("Continue the chosen model (Segment panel; else the newest) with the project's current cases: "
              "much faster than training from scratch.")


def _newest(models: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return max(models, key=lambda m: str(m.get("created") or "")) if models else None


def updateProblem(connected: bool, following: bool, models: Sequence[Dict[str, Any]],
                  newCases: Optional[int] = None) -> Optional[str]:
    """Why the update button is disabled (its tooltip), or None when it applies. ``newCases``: what
    :func:`newCaseCount` says of the model to update (None: not known, the backend decides)."""
    if not connected:
        return NOT_CONNECTED
    if following:
        return JOB_RUNNING
    if not models:
        return NO_MODEL_YET
    if newCases == 0:
        return NO_NEW_CASES
    return None


def newCaseCount(model: Optional[Dict[str, Any]], cases: Optional[Sequence[Dict[str, Any]]],
                 jobs: Sequence[Dict[str, Any]] = ()) -> Optional[int]:
    """How many labelled cases were added or changed after ``model``'s training took its cases (issue 32,
    item 5): those whose ``updated`` time is later than the creation of the model's job (its dataset
    snapshot; the model's own time when the job is not listed). None when the cases are not known.

    Times are the API's ISO 8601 UTC strings with milliseconds (``tskd.service.timeutil.iso``), which
    order as text.
    """
    if model is None or cases is None:
        return None
    job = next((j for j in jobs if str(j.get("id")) == str(model.get("job_id"))), None)
    snapshot = str((job or {}).get("created") or model.get("created") or "")
    return sum(1 for case in cases if case.get("labelled") and str(case.get("updated") or "") > snapshot)


def updateButtonText(count: Optional[int]) -> str:
    """The update button's text: how many cases are new, when known."""
    if not count:
        return "Update the model with the new cases"
    return "Update the model with {} new case{}".format(count, "" if count == 1 else "s")


def updateSource(models: Sequence[Dict[str, Any]], selectedId: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The model to update: the one with ``selectedId`` when the project has it, else the newest (None: no model)."""
    if selectedId:
        for model in models:
            if str(model.get("id")) == str(selectedId):
                return model
    return _newest(models)


def lineageText(model: Dict[str, Any], parentTitle: Optional[str]) -> str:
    """``"updated from <parentTitle>, +1 case"`` for an updated model; empty for one trained from scratch.

    ``parentTitle`` is the earlier model's title (None: not listed; its id is shown instead).
    """
    lineage = model.get("lineage") if isinstance(model.get("lineage"), dict) else None
    if lineage is None:
        return ""
    text = "updated from {}".format(parentTitle or lineage.get("updated_from_model") or lineage.get("updated_from_job")
                                    or "an earlier model")
    added = lineage.get("added_cases")
    if isinstance(added, list):
        text += ", +{} case{}".format(len(added), "" if len(added) == 1 else "s")
    removed = lineage.get("removed_cases")
    if isinstance(removed, list) and removed:
        text += ", -{} case{}".format(len(removed), "" if len(removed) == 1 else "s")
    return text


def startUpdate(client: Any, project: Dict[str, Any], model: Dict[str, Any],
                reuseSynthesis: bool = True) -> Dict[str, Any]:
    """Start the update job (blocking: worker thread) with the earlier job's preset and foundation model.

    ``reuseSynthesis`` False asks the backend to train the diffusion model and make the synthetic
    images again (``update: {reuse_synthesis: false}``, slower) instead of reusing the earlier run's.
    """
    earlier = client.job_status(str(model["job_id"])) if model.get("job_id") else {}
    base = (earlier.get("base") or "none") if "base" in earlier else None
    settings = {} if reuseSynthesis else {"update": {"reuse_synthesis": False}}
    return client.start_job(str(project["id"]), earlier.get("preset") or None, settings=settings, base=base,
                            update_from=str(model["id"]))
