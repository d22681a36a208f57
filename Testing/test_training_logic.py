"""Quality -> preset, and job status JSON -> what the training panel shows (statuses as ``tskd serve``
answers them; the samples are trimmed from a real tiny-preset run)."""

from __future__ import annotations

import copy

import pytest

from SlicerTSKDLib.train.jobDisplayLogic import activeJob, formatDuration, jobDisplay, modelTitle, resumableJob
from SlicerTSKDLib.train.presetLogic import TrainingProblem, presetChoices, presetForQuality
from SlicerTSKDLib.train.trainingLogic import TrainingLogic

PRESETS = ["cpu-small", "gpu", "standard", "tiny"]

RUNNING = {
    "id": "48e739ed7838", "project_id": "48c4898f58a1", "state": "running", "preset": "tiny", "settings": {},
    "base": None, "cases": 6, "created": "2026-11-21T06:29:07.508Z", "started": "2026-11-21T06:29:07.508Z",
    "finished": None, "attempts": 1, "exit_code": None, "error": None, "cancel_requested": False,
    "progress": {"stage": "distill", "stage_index": 3, "stage_count": 4, "step": 68, "total": 200,
                 "eta_s": 154.84, "metrics": {"loss": 1.62, "val_dice_global": 0.769, "val_dice": 0.7747,
                                              "val_dice_class1": 0.789, "val_dice_class2": 0.761},
                 "message": "", "state": "running", "updated": "2026-11-21T06:37:19.840Z"},
    "stages": {
        "prepare": {"stage": "prepare", "stage_index": 1, "stage_count": 1, "step": 6, "total": 6, "eta_s": 0.0,
                    "metrics": {}, "message": "", "state": "running", "updated": "2026-11-21T06:29:16.524Z"},
        "teacher": {"stage": "teacher", "stage_index": 1, "stage_count": 4, "step": 300, "total": 300, "eta_s": 0.0,
                    "metrics": {"val_dice": 0.866}, "message": "", "state": "running", "updated": "2026-11-21T06:32:52.405Z"},
        "synthesis": {"stage": "synthesis", "stage_index": 2, "stage_count": 4, "step": 100, "total": 100,
                      "eta_s": 0.0, "metrics": {"val_loss": 0.047}, "message": "finished", "state": "done",
                      "updated": "2026-11-21T06:35:00.483Z"},
        "transfer_set": {"stage": "transfer_set", "stage_index": 1, "stage_count": 1, "step": 0, "total": 0,
                         "eta_s": None, "metrics": {}, "message": "", "state": "done", "updated": "2026-11-21T06:35:40.000Z"},
        "distill": {"stage": "distill", "stage_index": 3, "stage_count": 4, "step": 68, "total": 200, "eta_s": 154.84,
                    "metrics": {"loss": 1.62, "val_dice": 0.7747}, "message": "", "state": "running",
                    "updated": "2026-11-21T06:37:19.840Z"},
    },
    "log_tail": ["[3/4 distill] ######.............. 68/200 ETA 02:34  loss=1.62"],
    "model_id": None,
}


def test_quality_maps_to_the_first_preset_the_server_offers():
    assert presetForQuality("quick", PRESETS) == "cpu-small"
    assert presetForQuality("standard", PRESETS) == "standard"
    assert presetForQuality("thorough", PRESETS) == "gpu"
    assert presetForQuality("thorough", ["cpu-small", "standard"]) == "standard"
    assert presetForQuality("quick", ["tiny"]) == "tiny"
    assert presetForQuality("quick", []) == "cpu-small"  # unknown: the first choice
    with pytest.raises(TrainingProblem, match="offers none of the presets for 'Thorough' \\(gpu, standard\\); it has: tiny"):
        presetForQuality("thorough", ["tiny"])
    with pytest.raises(ValueError):
        presetForQuality("fast", PRESETS)


def test_preset_choices_warn_about_gpu_presets_on_a_cpu_backend():
    choices = presetChoices(PRESETS, device="cpu")
    assert [c[:2] for c in choices] == [("Quick (cpu-small)", "cpu-small"), ("Standard (standard)", "standard"),
                                        ("Thorough (gpu)", "gpu"), ("Preset: tiny", "tiny")]
    assert "Meant for a GPU" in choices[1][2] and "Meant for a GPU" not in choices[0][2]
    assert "phantoms" in choices[3][2]
    assert all("Meant for a GPU" not in tip for _, _, tip in presetChoices(PRESETS, device="cuda"))


@pytest.mark.parametrize("seconds, text", [(None, ""), (-1, ""), (float("nan"), ""), (0.4, "0 s"), (45, "45 s"),
                                           (154.8, "3 min"), (3599, "1 h 00 min"), (7500, "2 h 05 min")])
def test_durations(seconds, text):
    assert formatDuration(seconds) == text


def test_running_job():
    display = jobDisplay(RUNNING)
    assert display.headline == "Training: Distillation (stage 3 of 4)."
    assert [(row.name, row.title) for row in display.stages] == [
        ("prepare", "Preparing slices"), ("teacher", "Teacher (foundation model)"), ("synthesis", "Synthetic images"),
        ("transfer_set", "Transfer set"), ("distill", "Distillation")]
    assert [row.fraction for row in display.stages] == [1.0, 1.0, 1.0, 1.0, 0.34]
    assert display.stages[-1].text == "68/200" and display.stages[-1].current and not display.stages[0].current
    assert display.fraction == 0.34 and display.etaText == "3 min" and display.diceText == "0.77"
    assert display.logText.startswith("[3/4 distill]")
    assert display.canCancel and not display.canResume and not display.finished and display.modelId is None


def test_an_ensembled_reference_shows_each_member_as_its_own_row():
    status = copy.deepcopy(RUNNING)
    for index, name in enumerate(("reference 1/3", "reference 2/3")):
        status["stages"][name] = dict(status["stages"]["distill"], updated="2026-11-21T06:5{}:00Z".format(index))
    status["progress"] = dict(status["progress"], stage="reference 2/3", stage_index=4)
    display = jobDisplay(status)
    assert display.headline == "Training: Labels-only reference 2/3 (stage 4 of 4)."
    assert [row.title for row in display.stages][-2:] == ["Labels-only reference 1/3", "Labels-only reference 2/3"]
    assert display.stages[-1].current and not display.stages[-2].current


def test_dice_comes_from_an_earlier_stage_until_the_current_one_validates():
    status = copy.deepcopy(RUNNING)
    status["progress"]["metrics"] = {"loss": 0.3}
    status["stages"]["distill"]["metrics"] = {"loss": 0.3}
    assert jobDisplay(status).diceText == "0.87"  # the teacher's
    for record in status["stages"].values():
        record["metrics"] = {}
    assert jobDisplay(status).diceText == ""


def test_done_failed_cancelled_interrupted_queued():
    done = dict(copy.deepcopy(RUNNING), state="done", model_id="m1", finished="2026-11-21T06:41:00Z")
    display = jobDisplay(done)
    assert display.finished and display.modelId == "m1" and display.fraction == 1.0 and display.etaText == ""
    assert all(row.fraction == 1.0 for row in display.stages)
    assert display.headline == "Training finished: the new model is ready. Validation Dice 0.77."
    failed = dict(copy.deepcopy(RUNNING), state="failed", error="case_003: the label has no foreground")
    display = jobDisplay(failed)
    assert display.headline == "Training failed: case_003: the label has no foreground"
    assert display.canResume and not display.canCancel and display.modelId is None
    assert jobDisplay(dict(RUNNING, state="cancelled")).headline.startswith("Training was cancelled. Resume")
    assert jobDisplay(dict(RUNNING, state="interrupted")).canResume
    queued = {"id": "j", "state": "queued", "progress": None, "stages": {}, "log_tail": []}
    display = jobDisplay(queued)
    assert display.headline.startswith("Waiting for the backend") and display.canCancel and display.stages == []
    assert display.fraction is None
    stopping = dict(copy.deepcopy(RUNNING), cancel_requested=True)
    assert jobDisplay(stopping).headline.startswith("Stopping") and not jobDisplay(stopping).canCancel


def test_the_real_final_status_of_a_run():
    done = copy.deepcopy(RUNNING)
    done.update(state="done", model_id="c384e9d57b5e", exit_code=0, finished="2026-11-21T06:43:18.375Z")
    done["progress"] = {"stage": "pipeline", "stage_index": 4, "stage_count": 4, "step": 0, "total": 0, "eta_s": None,
                        "metrics": {}, "message": "finished", "state": "done", "updated": "2026-11-21T06:43:16.253Z"}
    done["stages"]["finetune"] = {"stage": "finetune", "stage_index": 4, "stage_count": 4, "step": 150, "total": 150,
                                  "eta_s": 0.0, "metrics": {"val_dice": 0.9599}, "message": "finished", "state": "done",
                                  "updated": "2026-11-21T06:43:00.000Z"}
    done["stages"]["pipeline"] = done["progress"]
    display = jobDisplay(done)
    assert [row.title for row in display.stages][-2:] == ["Student fine-tuning", "Finishing"]
    assert display.diceText == "0.96" and display.modelId == "c384e9d57b5e"
    assert display.headline == "Training finished: the new model is ready. Validation Dice 0.96."
    assert display.verdictText == ""  # a server from before the comparison

    # the backend's comparison of the distilled student with the labels-only reference
    line = ("the distilled student was not better than training on the labels alone (0.890 vs 0.930), so the "
            "labels-only student was exported; a foundation model (MedSAM) is what makes distillation pay")
    done["comparison"] = {"distilled": {"val_dice": 0.89}, "reference": {"val_dice": 0.93}, "chosen": "reference",
                          "decided_on": "too_few_validation_subjects", "val_subjects": 2, "verdict": line,
                          "warning": "only 2 validation subjects: too few to tell the two students apart"}
    display = jobDisplay(done)
    assert display.verdictText == ("The distilled student was not better than training on the labels alone (0.890 "
                                   "vs 0.930), so the labels-only student was exported; a foundation model (MedSAM) "
                                   "is what makes distillation pay. Note: only 2 validation subjects: too few to "
                                   "tell the two students apart.")
    assert display.headline == "Training finished: the new model is ready. " + display.verdictText
    running = copy.deepcopy(done)
    running["state"] = "running"
    assert jobDisplay(running).verdictText == ""


def test_which_job_to_follow_or_resume():
    jobs = [{"id": "a", "state": "done", "created": "2026-01-01"}, {"id": "b", "state": "interrupted", "created": "2026-01-02"},
            {"id": "c", "state": "failed", "created": "2025-12-01"}]
    assert activeJob(jobs) is None and resumableJob(jobs)["id"] == "b"
    jobs.append({"id": "d", "state": "done", "created": "2026-01-03"})
    assert resumableJob(jobs) is None  # a newer model exists
    jobs.append({"id": "e", "state": "running", "created": "2026-01-04"})
    assert activeJob(jobs)["id"] == "e"


def test_model_title():
    model = {"id": "m1", "created": "2026-11-21T06:41:07.123Z", "student": {"architecture": "unet_small"},
             "metrics": {"val_dice": 0.9312}}
    assert modelTitle(model) == "2026-11-21 06:41 - unet_small - Dice 0.93"
    assert modelTitle({"id": "m2"}) == "m2"
    assert modelTitle(dict(model, kind="distilled", base="medsam-vit-b")) == (
        "2026-11-21 06:41 - TS-KD unet_small - Dice 0.93 - from medsam-vit-b")
    assert modelTitle(dict(model, kind="reference", base=None)) == (
        "2026-11-21 06:41 - labels only unet_small - Dice 0.93 - no teacher")


# ---- issue 18: updating a finished model with the new cases
FIRST = {"id": "m1", "job_id": "j1", "created": "2026-11-21T06:41:07.123Z", "kind": "distilled",
         "student": {"architecture": "unet_small"}, "metrics": {"val_dice": 0.9312}, "base": None, "lineage": None}
UPDATED = dict(FIRST, id="m2", job_id="j2", created="2026-11-22T08:05:00.000Z", lineage={
    "updated_from_job": "j1", "updated_from_model": "m1", "added_cases": ["case_002", "case_003"],
    "removed_cases": [], "labelled_before": 2, "labelled_now": 4})


def test_update_is_enabled_only_with_a_finished_model_and_says_why_not():
    from SlicerTSKDLib.train.updateLogic import JOB_RUNNING, NO_MODEL_YET, NOT_CONNECTED

    logic = TrainingLogic()
    assert logic.updateProblem(connected=False) == NOT_CONNECTED
    assert logic.updateProblem(connected=True) == NO_MODEL_YET  # no model listed yet
    logic.models = [FIRST]
    assert logic.updateProblem(connected=True) is None
    logic.follow("j9")
    assert logic.updateProblem(connected=True) == JOB_RUNNING
    logic.forgetJobs()  # another project: its models are listed again
    assert logic.models == [] and logic.updateProblem(connected=True) == NO_MODEL_YET


def test_update_continues_the_chosen_model_else_the_newest():
    logic = TrainingLogic()
    assert logic.updateModel("m1") is None
    logic.models = [FIRST, UPDATED]
    assert logic.updateModel("m1")["id"] == "m1"  # chosen in the Segment panel
    assert logic.updateModel(None)["id"] == "m2" and logic.updateModel("")["id"] == "m2"
    assert logic.updateModel("gone")["id"] == "m2"  # a choice from another project or deleted


def test_update_keeps_the_earlier_jobs_preset_and_foundation_model():
    class Client:
        def __init__(self, base):
            self.base, self.sent = base, None

        def job_status(self, jobId):
            assert jobId == "j1"
            return {"id": "j1", "preset": "tiny", "base": self.base}

        def start_job(self, projectId, preset=None, settings=None, base=None, update_from=None):
            self.sent = (projectId, preset, base, update_from)
            self.settings = settings
            return {"id": "j3"}

    for base, sent in ((None, "none"), ("medsam-vit-b", "medsam-vit-b")):
        client = Client(base)
        assert TrainingLogic.startUpdate(client, {"id": "p1"}, FIRST) == {"id": "j3"}
        assert client.sent == ("p1", "tiny", sent, "m1") and client.settings == {}  # synthesis reused
    client = Client(None)  # the check box unticked: synthesis trained again
    TrainingLogic.startUpdate(client, {"id": "p1"}, FIRST, False)
    assert client.sent == ("p1", "tiny", "none", "m1") and client.settings == {"update": {"reuse_synthesis": False}}


def test_model_title_shows_the_lineage():
    assert modelTitle(FIRST, [FIRST, UPDATED]) == "2026-11-21 06:41 - TS-KD unet_small - Dice 0.93 - no foundation model"
    assert modelTitle(UPDATED, [FIRST, UPDATED]) == (
        "2026-11-22 08:05 - TS-KD unet_small - Dice 0.93 - no foundation model - updated from 2026-11-21 06:41, "
        "+2 cases")  # the earlier model's title starts with its time
    # the earlier model not listed: its id; one case added and one removed
    one = dict(UPDATED, lineage=dict(UPDATED["lineage"], added_cases=["case_004"], removed_cases=["case_000"]))
    assert modelTitle(one).endswith(" - updated from m1, +1 case, -1 case")


def test_a_foundation_model_just_added_is_shown_and_saved_once_even_if_listings_cross_the_save():
    """Issue 32, item 12: after a download or import the chooser shows the new model (not the saved "None")
    and saves it once; a listing arriving before the save returns still shows it; the user's own choice wins."""
    logic = TrainingLogic()
    rows = [{"name": "sam-vit-b", "state": "verified", "title": "SAM ViT-B"}]
    old = {"id": "p", "settings": {"base": "none"}}
    assert logic.choiceToSave(logic.foundation(rows, old), old) is None  # nothing added: the saved choice
    assert logic.foundation(rows, old).choices[logic.foundation(rows, old).index].value == "none"
    from types import SimpleNamespace

    logic.download = SimpleNamespace(name="sam-vit-b")
    assert logic.downloadStatus(SimpleNamespace(finished=True, ok=True))
    view = logic.foundation(rows, old)
    assert view.choices[view.index].value == "sam-vit-b" and logic.choiceToSave(view, old) == "sam-vit-b"
    again = logic.foundation(rows, old)  # a second listing before the save came back
    assert again.choices[again.index].value == "sam-vit-b" and logic.choiceToSave(again, old) is None
    logic.choiceSaved({"id": "p", "settings": {"base": "sam-vit-b"}})
    later = logic.foundation(rows, {"id": "p", "settings": {"base": "none"}})  # the user chose None since
    assert later.choices[later.index].value == "none"
    logic.importedText({"name": "sam-vit-b", "architecture": "SAM"})
    logic.userChose()
    assert logic.foundation(rows, old).choices[logic.foundation(rows, old).index].value == "none"


def test_the_download_status_is_not_asked_for_before_the_start_request_has_answered():
    """Asked before the backend queued the fetch, the status reads "missing", which is a finished, failed
    download: the panel stopped following a download that then ran (issue 32, item 12's race)."""
    from types import SimpleNamespace

    from SlicerTSKDLib.train.foundationState import DOWNLOAD_STATUS, STARTING_DOWNLOAD

    logic = TrainingLogic()
    assert not logic.pollDownloadNow(lambda name: False)  # no download
    logic.download = SimpleNamespace(name="sam-vit-b")
    assert not logic.pollDownloadNow(lambda name: name == STARTING_DOWNLOAD)
    assert not logic.pollDownloadNow(lambda name: name == DOWNLOAD_STATUS)  # one status request at a time
    assert logic.pollDownloadNow(lambda name: False)
