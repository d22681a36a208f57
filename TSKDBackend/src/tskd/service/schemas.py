"""Request and response bodies of the HTTP API (pydantic models; they also make ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "LabelSpec",
    "ProjectCreate",
    "ProjectUpdate",
    "ProjectOut",
    "ProjectList",
    "CaseOut",
    "CaseList",
    "JobCreate",
    "JobProgress",
    "JobOut",
    "JobList",
    "ModelOut",
    "ModelList",
    "HealthOut",
    "InfoOut",
]

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelSpec(_Strict):
    """One label of a project: the value stored in label maps, a name, an optional colour."""

    value: int = Field(ge=0, le=65535, description="integer stored in label maps; 0 is the background")
    name: str = Field(min_length=1, max_length=64)
    color: Optional[list[float]] = Field(default=None, description="[r, g, b], each in 0..1")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a label name must not be blank")
        return value

    @field_validator("color")
    @classmethod
    def _color(cls, value: Optional[list[float]]) -> Optional[list[float]]:
        if value is None:
            return None
        if len(value) != 3 or any(not 0.0 <= float(c) <= 1.0 for c in value):
            raise ValueError("a colour is [r, g, b] with each value in 0..1")
        return [float(c) for c in value]


class ProjectCreate(_Strict):
    name: str = Field(min_length=1, max_length=100)
    labels: list[LabelSpec] = Field(min_length=1, description="the labels; value 0 (background) is added when missing")
    settings: dict[str, Any] = Field(default_factory=dict, description="free-form project settings (e.g. preset)")


class ProjectUpdate(_Strict):
    name: Optional[str] = Field(default=None, min_length=1, max_length=100)
    labels: Optional[list[LabelSpec]] = Field(default=None, min_length=1)
    settings: Optional[dict[str, Any]] = None


class ProjectOut(BaseModel):
    id: str
    name: str
    labels: list[LabelSpec]
    settings: dict[str, Any]
    created: str
    updated: str
    cases: int
    labelled_cases: int
    dimension: Optional[int] = Field(description="2 or 3 once the project holds cases")


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class CaseOut(BaseModel):
    name: str
    labelled: bool
    size: list[int] = Field(description="voxels per axis, ITK (i, j, k) order")
    spacing: list[float]
    origin: list[float]
    direction: list[float]
    pixel_type: str
    label_values: Optional[list[int]]
    source_format: str
    image_bytes: int
    label_bytes: Optional[int]
    created: str
    updated: str


class CaseList(BaseModel):
    cases: list[CaseOut]


class JobCreate(_Strict):
    preset: Optional[str] = Field(default=None, description="named settings (see /info); default: the project's "
                                  "'preset' setting, else 'cpu-small'")
    settings: dict[str, Any] = Field(default_factory=dict, description="config overrides, as in a --config YAML file")
    base: Optional[str] = Field(default=None, description="a base checkpoint name from /info's checkpoints")


class JobProgress(BaseModel):
    stage: str
    stage_index: int
    stage_count: int
    step: int
    total: int
    eta_s: Optional[float]
    metrics: dict[str, Any]
    message: str
    state: str
    updated: Optional[str]


class JobOut(BaseModel):
    id: str
    project_id: str
    state: JobState
    preset: str
    settings: dict[str, Any]
    base: Optional[str]
    cases: int = Field(description="labelled and unlabelled cases in the job's dataset snapshot")
    created: str
    started: Optional[str]
    finished: Optional[str]
    attempts: int
    exit_code: Optional[int]
    error: Optional[str]
    cancel_requested: bool
    progress: Optional[JobProgress]
    stages: dict[str, JobProgress]
    log_tail: list[str]
    model_id: Optional[str]


class JobList(BaseModel):
    jobs: list[JobOut]


class ModelOut(BaseModel):
    id: str
    project_id: str
    job_id: str
    created: str
    metrics: dict[str, Any]
    labels: list[dict[str, Any]]
    input: dict[str, Any]
    student: dict[str, Any]
    teacher: dict[str, Any]
    files: list[dict[str, Any]]
    metadata: Optional[dict[str, Any]] = Field(default=None,
                                               description="the whole tskd-model.json (single model only)")


class ModelList(BaseModel):
    models: list[ModelOut]


class HealthOut(BaseModel):
    status: str
    version: str


class InfoOut(BaseModel):
    version: str
    api: str
    device: dict[str, Any]
    checkpoints: list[dict[str, Any]]
    presets: list[str]
    limits: dict[str, Any]
    jobs: dict[str, Any]
