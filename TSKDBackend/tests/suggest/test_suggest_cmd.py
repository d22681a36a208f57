"""``tskd suggest`` on the command line with an untrained package (fast): the JSON file, a plain
folder of images, unreadable images skipped, and one clear line with exit status 2 for bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import one_torch_thread
from tests.data.datamaker import write
from tests.runtime.packages import make_package, make_volume
from tskd.cli.main import main
from tskd.data.phantom import PhantomConfig, write_phantom_dataset


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder with a student package and no teacher."""
    with one_torch_thread():
        run = tmp_path_factory.mktemp("suggest_cli") / "run"
        make_package(run / "package")
    return run


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("suggest_data") / "data", cases=2, unlabelled=2,
                                 config=PhantomConfig(size=(24, 20, 8)))


def test_json_lists_the_unlabelled_cases_slices_best_first(run_folder, dataset, tmp_path, capsys):
    out = tmp_path / "s.json"
    code = main(["suggest", "--model", str(run_folder), "--data", str(dataset), "--top", "4", "--max-per-case", "2",
                 "--json", str(out), "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "[2/2] scored case_003" in captured.err
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["teacher"] == {"used": False, "note": f"no trained teacher in {run_folder / 'teacher'} "
                                                       "(student entropy only)"}
    rows = saved["suggestions"]
    assert len(rows) == 4 and {r["case"] for r in rows} == {"case_002", "case_003"}
    assert all(sum(r["case"] == c for r in rows) == 2 for c in ("case_002", "case_003"))
    assert all(0 <= r["slice"] < 8 and r["axis"] == 0 and 0.0 <= r["score"] <= 1.0 for r in rows)
    scores = [c["score"] for c in saved["cases"]]
    assert [c["case"] for c in saved["cases"]] != [] and scores == sorted(scores, reverse=True)
    assert f"wrote {out}" in captured.out


def test_a_plain_folder_of_images_with_one_unreadable(run_folder, tmp_path, capsys):
    for i in range(2):
        write(tmp_path / "scans" / f"scan_{i}.nii.gz", make_volume((3, 20, 24), seed=i))
    (tmp_path / "scans" / "broken.nrrd").write_text("NRRD0004\nnonsense\n", encoding="utf-8")
    code = main(["suggest", "--model", str(run_folder), "--data", str(tmp_path / "scans"), "--top", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipped 1 unreadable case(s): broken" in captured.out
    table = captured.out.splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["1", "2", "3"]


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing"], "missing: not found; give a run folder"),
    (["--model", "{tmp}/empty_run"], "holds no trained student"),
    (["--data", "{tmp}/no_images"], "holds no usable images to score"),
    (["--data", "{tmp}/missing_data"], "missing_data: not found"),
    (["--top", "0"], "--top must be at least 1, got 0"),
    (["--max-per-case", "-1"], "--max-per-case must be at least 1"),
    (["--json", "{tmp}"], "is a folder; give a file name"),
])
def test_bad_input_is_one_line_and_exit_2(run_folder, dataset, tmp_path, capsys, args, message):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "no_images" / "images").mkdir(parents=True)
    argv = {"--model": str(run_folder), "--data": str(dataset)}
    for flag, value in zip(args[::2], args[1::2]):
        argv[flag] = value.format(tmp=tmp_path)
    code = main(["suggest"] + [item for pair in argv.items() for item in pair])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("tskd: error:") and message in last and "Traceback" not in err


def test_a_dataset_with_every_case_labelled_needs_include_labelled(run_folder, tmp_path, capsys):
    data = write_phantom_dataset(tmp_path / "all", cases=2, config=PhantomConfig(size=(16, 16, 8)))
    assert main(["suggest", "--model", str(run_folder), "--data", str(data)]) == 2
    assert "all 2 cases are labelled" in capsys.readouterr().err
    assert main(["suggest", "--model", str(run_folder), "--data", str(data), "--include-labelled", "--top", "2"]) == 0
    assert "case_00" in capsys.readouterr().out


def test_a_package_zip_is_scored_without_a_teacher(run_folder, dataset, tmp_path):
    from tskd.export import zip_package
    from tskd.suggest import suggest

    zipped = zip_package(run_folder, tmp_path / "model.tskd.zip")
    result = suggest(zipped, dataset, config=None, threads=1)
    assert not result.teacher_used and "student package, not a run folder" in result.teacher_note
    assert {c.case_id for c in result.cases} == {"case_002", "case_003"}


def test_the_help_shows_the_config_defaults(capsys):
    # the parser repeats SuggestConfig's defaults so that 'tskd --help' imports nothing heavy
    from tskd.suggest import SuggestConfig

    with pytest.raises(SystemExit):
        main(["suggest", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = SuggestConfig()
    assert f"suggested slices (default: {defaults.top})" in text
    assert f"at most M slices per case (default: {defaults.max_per_case})" in text
