"""Request and response bodies of the HTTP API (pydantic models; they also make ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tskd.runconfig import DEFAULT_PRESET

__all__ = [
    "ErrorOut",
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
    "LineageOut",
    "ModelOut",
    "ModelList",
    "HealthOut",
    "InfoOut",
    "FetchOut",
    "CheckpointOut",
    "CheckpointList",
    "SuggestionEntry",
    "CaseScoreEntry",
    "SuggestionSet",
    "SuggestionsOut",
]

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]


class _Strict(BaseModel):
    """A request body: unknown fields refused, and no silent conversions (``true`` is not the
    number 1, ``"1"`` is not an integer), so that what /openapi.json calls invalid is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorOut(BaseModel):
    """The body of every error response (4xx and 5xx)."""

    detail: str = Field(description="what is wrong and what to do, for a person")
    code: str = Field(description="the kind of error, for a program: bad_request, unauthorized, not_found, "
                      "method_not_allowed, conflict, too_large, unsupported_type, invalid, internal, upstream "
                      "(docs/service-api.md)")


_NOT_BLANK = {"pattern": r"\S"}
_COLOUR = {"minItems": 3, "maxItems": 3, "items": {"type": "number", "minimum": 0.0, "maximum": 1.0}}


def _not_blank(value: Optional[str], what: str) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError(f"a {what} must not be blank")
    return value


class LabelSpec(_Strict):
    """One label of a project: the value stored in label maps, a name, an optional colour."""

    value: int = Field(ge=0, le=65535, description="integer stored in label maps; 0 is the background")
    # the validators below check these with messages that say what to send; the schema states them
    name: str = Field(min_length=1, max_length=64, description="not blank", json_schema_extra=_NOT_BLANK)
    color: Optional[list[float]] = Field(default=None, description="[r, g, b], each in 0..1",
                                         json_schema_extra=_COLOUR)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _not_blank(value, "label name")

    @field_validator("color")
    @classmethod
    def _color(cls, value: Optional[list[float]]) -> Optional[list[float]]:
        if value is None:
            return None
        if len(value) != 3 or any(not 0.0 <= float(c) <= 1.0 for c in value):
            raise ValueError("a colour is [r, g, b] with each value in 0..1")
        return [float(c) for c in value]


class ProjectCreate(_Strict):
    name: str = Field(min_length=1, max_length=100, description="not blank; unique on the server",
                      json_schema_extra=_NOT_BLANK)
    labels: list[LabelSpec] = Field(min_length=1, description="the labels; value 0 (background) is added when missing")
    settings: dict[str, Any] = Field(default_factory=dict, description="free-form project settings (e.g. preset)")

    _name = field_validator("name")(lambda cls, value: _not_blank(value, "project name"))


class ProjectUpdate(_Strict):
    name: Optional[str] = Field(default=None, min_length=1, max_length=100, json_schema_extra=_NOT_BLANK)
    labels: Optional[list[LabelSpec]] = Field(default=None, min_length=1)
    settings: Optional[dict[str, Any]] = None

    _name = field_validator("name")(lambda cls, value: _not_blank(value, "project name"))


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
                                  f"'preset' setting, else '{DEFAULT_PRESET}'")
    settings: dict[str, Any] = Field(default_factory=dict, description="config overrides, as in a --config YAML file")
    base: Optional[str] = Field(
        default=None, max_length=200,
        description="the foundation model: a name from GET /checkpoints that is present (catalog or imported "
                    "weights, or a file of the workspace's checkpoints folder), 'auto' (the best present: MedSAM "
                    "first) or 'none' (teacher trained from scratch, much less accurate); default: the project's "
                    "'base' setting, else 'none'")
    update_from: Optional[str] = Field(
        default=None, max_length=64,
        description="a model id (or the id of the finished job that made it) of the same project: update that "
                    "model with the project's new labels (teacher and students start from it, a short schedule "
                    "from the preset's 'update' section, its diffusion model reused unless settings say "
                    "update: {reuse_synthesis: false}); default: train from scratch")
    force: bool = Field(
        default=False,
        description="queue the job even while another job of the project is queued or running, or when an update "
                    "(update_from) would see no new or changed case; without it both are refused with 409")


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


class StudentScore(BaseModel):
    val_dice: Optional[float] = Field(description="mean foreground Dice of the exported student on the validation "
                                      "volumes (None without validation volumes)")


class ComparisonOut(BaseModel):
    """A run's choice between its distilled student and the one trained on the labels alone."""

    distilled: StudentScore
    reference: Optional[StudentScore] = Field(description="the labels-only student (None: reference disabled)")
    chosen: Literal["distilled", "reference"] = Field(description="which student the job exported as its model")
    decided_on: Literal["validation", "too_few_validation_subjects", "no_validation", "reference_disabled"]
    val_subjects: int = Field(description="validation subjects the scores come from")
    warning: Optional[str] = Field(description="why the choice is uncertain or unchecked (None: it is not)")
    verdict: str = Field(description="one line for the user: which student was exported and what distillation added")


class JobOut(BaseModel):
    id: str
    project_id: str
    state: JobState
    preset: str
    settings: dict[str, Any]
    base: Optional[str] = Field(description="the foundation model the job trains on (None: from scratch)")
    base_sha256: Optional[str] = Field(default=None, description="SHA-256 of the foundation weights")
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
    comparison: Optional[ComparisonOut] = Field(
        default=None, description="a finished job's distilled vs labels-only students and which was exported "
        "(None until done, and for packages that do not record it)")
    update_from: Optional[str] = Field(default=None, description="the job whose model this job updates "
                                       "(None: trained from scratch)")


class LineageOut(BaseModel):
    updated_from_job: str = Field(description="the job whose model this one was updated from")
    updated_from_model: Optional[str] = Field(description="that job's model (None when it was deleted)")
    added_cases: Optional[list[str]] = Field(description="cases labelled now and not then (None: not recorded)")
    removed_cases: Optional[list[str]] = Field(description="cases labelled then and not now")
    labelled_before: Optional[int]
    labelled_now: Optional[int]


class JobList(BaseModel):
    jobs: list[JobOut]


class BoxModelOut(BaseModel):
    model: str = Field(description="its readable name (the run's, or the architecture)")
    architecture: str = Field(description="the SAM-family architecture (litemedsam)")
    checkpoint_sha256: str = Field(description="SHA-256 of the fine-tuned weights the graphs were exported from")
    input_size: int = Field(description="the model's square input side in pixels")
    size_bytes: int = Field(description="the graphs and box_model.json together")


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
    base: Optional[str] = Field(default=None, description="the foundation model the student was distilled from "
                                "(None: a teacher trained from scratch)")
    base_sha256: Optional[str] = Field(default=None, description="its SHA-256 (as in the package's teacher.base_sha256)")
    kind: Optional[Literal["distilled", "reference"]] = Field(
        default=None, description="distilled: the TS-KD student; reference: the student trained on the labels "
        "alone, exported because distillation did not beat it; None: the package does not say")
    comparison: Optional[ComparisonOut] = Field(default=None, description="the run's comparison (package metadata)")
    lineage: Optional[LineageOut] = Field(default=None, description="which model this one was updated from and "
                                          "which cases were added (None: trained from scratch)")
    box_model: Optional[BoxModelOut] = Field(
        default=None, description="the run's task-tuned teacher as an ONNX box model (GET /models/{id}/box-model); "
        "None: the run exported none, use a foundation model's (GET /checkpoints/{name}/box-model)")
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


FetchState = Literal["queued", "running", "done", "failed", "cancelled"]


class FetchOut(BaseModel):
    """The server's download of a catalog entry."""

    state: FetchState
    done_bytes: Optional[int] = Field(description="bytes received so far (kept across restarts)")
    total_bytes: Optional[int] = Field(description="the file's size when the catalog gives it")
    error: Optional[str]
    error_status: Optional[int] = Field(description="502: the weights' server failed; 422: wrong file or entry")
    attempts: int
    created: Optional[str]
    started: Optional[str]
    finished: Optional[str]
    cancel_requested: bool


class CheckpointOut(BaseModel):
    """Foundation weights the server has or can get."""

    name: str = Field(description="what a job's 'base' names")
    title: str
    architecture: Optional[str]
    licence: Optional[str]
    catalog: bool = Field(description="a model of the catalog (present or not)")
    location: Optional[Literal["cache", "workspace"]] = Field(
        description="the shared weights cache, the workspace's checkpoints folder, or None when absent")
    state: Literal["verified", "changed", "missing", "absent", "present"] = Field(
        description="verified: in the cache with its recorded SHA-256; changed/missing: altered or gone since "
                    "recorded (remove and get again); absent: not on the server; present: a workspace file")
    path: Optional[str]
    size_bytes: Optional[int]
    sha256: Optional[str]
    origin: Optional[str]
    how: str = Field(description="how to get it when absent")
    downloadable: bool = Field(description="POST /checkpoints/{name}/fetch can download it")
    fetch: Optional[FetchOut]


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointOut]


class SuggestionEntry(BaseModel):
    """One slice to label next."""

    rank: int = Field(description="1 for the slice most worth labelling")
    case: str = Field(description="the project case (its name)")
    slice: int = Field(description="numpy index along 'axis' of the case's (k, j, i) image array")
    axis: int = Field(description="the axis the student slices along (0: k)")
    score: float = Field(description="0..1: (1 - w) * entropy + w * disagreement, or the entropy alone")
    entropy: float = Field(description="the student's mean normalised entropy on the slice (0..1)")
    disagreement: Optional[float] = Field(description="mean teacher-student total-variation distance (0..1); "
                                          "None without the teacher")
    why: str = Field(description="the terms that bring the score, for a person")


class CaseScoreEntry(BaseModel):
    """A case's rank: the mean of its best slice scores."""

    rank: int
    case: str
    score: float
    top_slices: list[int] = Field(description="its best slices (numpy indices along the axis)")
    num_slices: int


class SuggestionSet(BaseModel):
    """The ``tskd-suggestions`` JSON of ``tskd suggest --json`` (docs/architecture.md), for a project's model."""

    format: Literal["tskd-suggestions"]
    format_version: int
    model: str = Field(description="the model id")
    data: str = Field(description="what was scored")
    teacher: dict[str, Any] = Field(description="{'used': bool, 'note': why it was or was not used}")
    config: dict[str, Any] = Field(description="the SuggestConfig used")
    suggestions: list[SuggestionEntry]
    cases: list[CaseScoreEntry] = Field(description="every scored case, most worth labelling first")
    skipped: list[dict[str, str]] = Field(description="{'case', 'error'} of each case that could not be read")
    seconds: float


class SuggestionsOut(BaseModel):
    """The state of a project's suggestions: being computed (202), or done or failed (200)."""

    status: Literal["computing", "done", "failed"]
    project_id: str
    model_id: str
    top: int = Field(description="the number of suggestions asked for (every top is cut from one computation)")
    teacher: bool = Field(description="whether the teacher was asked for (it is used when the run has one)")
    fingerprint: str = Field(description="of the unlabelled cases scored (a new upload gives a new one)")
    case_names: list[str] = Field(description="the unlabelled cases scored")
    requested: Optional[str] = Field(description="when the computation was started")
    finished: Optional[str]
    error: Optional[str] = Field(description="failed: what went wrong and what to do")
    result: Optional[SuggestionSet] = Field(description="done: the suggestions")
