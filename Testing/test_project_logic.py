"""Project labels from segments, segment-to-label matching, case names, case list rows."""

from __future__ import annotations

import pytest

from SlicerTSKDLib.train.projectLogic import (
    ProjectProblem,
    caseLabelMapping,
    caseRows,
    labelsFromSegments,
    projectTitle,
    safeCaseName,
    uniqueCaseName,
)
from SlicerTSKDLib.session import userMessage
from SlicerTSKDLib.backend.client import TSKDClientError, TSKDConnectionError


def test_labels_follow_segment_order_names_and_colours():
    labels = labelsFromSegments([(" liver ", (0.9, 0.1, 0.123456)), ("spleen", (0.0, 0.5, 1.0))])
    assert labels == [{"value": 1, "name": "liver", "color": [0.9, 0.1, 0.1235]},
                      {"value": 2, "name": "spleen", "color": [0.0, 0.5, 1.0]}]


@pytest.mark.parametrize("segments, message", [
    ([], "has no segments"),
    ([("", (1, 0, 0))], "Segment 1 has no name"),
    ([("Liver", (1, 0, 0)), ("liver", (0, 1, 0))], "Two segments are called 'liver'"),
    ([("Background", (0, 0, 0))], "'background' is reserved"),
])
def test_bad_segments_are_refused(segments, message):
    with pytest.raises(ProjectProblem, match=message):
        labelsFromSegments(segments)


def test_segments_are_matched_to_project_labels_by_name():
    labels = [{"value": 0, "name": "background"}, {"value": 3, "name": "Liver"}, {"value": 5, "name": "spleen"}]
    assert caseLabelMapping(labels, ["spleen", "LIVER "]) == [5, 3]
    assert caseLabelMapping(labels, ["liver"]) == [3]  # a structure may be absent from a case
    with pytest.raises(ProjectProblem, match=r"'tumour', 'Segment_1' are not labels of this project \(its labels: Liver, spleen\)"):
        caseLabelMapping(labels, ["liver", "tumour", "Segment_1"])
    with pytest.raises(ProjectProblem, match="no segments"):
        caseLabelMapping(labels, [])


def test_case_names_are_safe_and_unique():
    assert safeCaseName("CT chest (2)/ä") == "CT_chest_2"
    assert safeCaseName("..hidden..name") == "hidden.name"
    assert safeCaseName("///") == "case"
    assert uniqueCaseName("MR head", ["MR_head", "mr_head_2"]) == "MR_head_3"


def test_case_rows_and_project_title():
    rows = caseRows([{"name": "b", "labelled": False, "size": [10, 12]}, {"name": "a", "labelled": True, "size": [64, 64, 32]}])
    assert rows == [("a", "labelled", "64 x 64 x 32"), ("b", "image only", "10 x 12")]
    assert projectTitle({"name": "liver", "cases": 1, "labelled_cases": 1}) == "liver (1 case, 1 labelled)"
    assert projectTitle({"name": "liver"}) == "liver"


def test_user_messages():
    assert userMessage(TSKDClientError(422, "case_001-label.nrrd: values 0..9 are not labels")) == \
        "case_001-label.nrrd: values 0..9 are not labels"
    assert userMessage(TSKDClientError(401, "unauthorized"), "http://h:1").startswith("The backend at http://h:1 refused the token")
    assert userMessage(TSKDConnectionError("cannot reach the backend at http://h:1: [Errno 111] Connection refused"),
                       "http://h:1").startswith("Nothing answers at http://h:1")
    assert userMessage(ProjectProblem("Select a volume.")) == "Select a volume."
    assert userMessage(KeyError("x")) == "Unexpected error (KeyError): 'x'"
