"""``tskd predict`` and ``tskd evaluate`` on the command line."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk

from tests.conftest import one_torch_thread
from tests.data.datamaker import write
from tests.runtime.packages import make_package, make_volume
from tskd.cli import predict_cmd
from tskd.cli.main import main
from tskd.export import zip_package
from tskd.inference import predict


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    with one_torch_thread():
        run = tmp_path_factory.mktemp("cli") / "liver_run"
        make_package(run / "package")
    return run


def test_choices_match_the_library():
    assert predict_cmd.FORMATS == predict.FORMATS and predict_cmd.BACKENDS == predict.BACKENDS


def test_predict_then_evaluate(run_folder, tmp_path, capsys):
    for i in range(2):
        write(tmp_path / "images" / f"case_{i}.nii.gz", make_volume((4, 20, 24), seed=i), (0.8, 0.8, 2.5))
    (tmp_path / "images" / "bad.nrrd").write_text("NRRD0004\nnonsense\n", encoding="utf-8")
    code = main(["predict", "--model", str(run_folder), "--input", str(tmp_path / "images"),
                 "--output", str(tmp_path / "pred"), "--threads", "1", "--batch-size", "3"])
    captured = capsys.readouterr()
    assert code == 1  # one input could not be read
    assert "[1/3] bad.nrrd: skipped:" in captured.out and "[2/3] case_0.nii.gz -> " in captured.out
    assert "segmented 2 of 3 inputs" in captured.out and "could not be segmented: bad.nrrd" in captured.err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["case_0.nii.gz", "case_1.nii.gz"]

    # score the predictions against themselves, written as references with another suffix
    (tmp_path / "ref").mkdir()
    for i in range(2):
        labels = sitk.ReadImage(str(tmp_path / "pred" / f"case_{i}.nii.gz"))
        sitk.WriteImage(labels, str(tmp_path / "ref" / f"case_{i}.nrrd"))
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--out", str(tmp_path / "eval"), "--no-surface"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[1/2] case_0: mean Dice 1.000" in out and "wrote " in out and "2 cases" in out
    data = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert data["summary"]["mean_dice"] == 1.0 and data["summary"]["n_cases"] == 2


def test_predict_from_a_zip_with_torch_and_seg_nrrd(run_folder, tmp_path, capsys):
    zipped = zip_package(run_folder, tmp_path / "liver.tskd.zip")
    image = write(tmp_path / "one.nii.gz", make_volume((4, 20, 24)))
    code = main(["predict", "--model", str(zipped), "--input", str(image), "--output", str(tmp_path / "out"),
                 "--format", "seg.nrrd", "--backend", "torch", "--roi", "1:3,:,:"])
    assert code == 0, capsys.readouterr().err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "one.seg.nrrd")))
    assert not labels[0].any() and not labels[3].any()
    assert "[1/1] one.nii.gz -> " in capsys.readouterr().out


def test_clear_errors_exit_2(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tskd: error:") and "no tskd-model.json here" in err
    assert main(["predict", "--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--roi", "1:2"]) == 2
    assert "give 3 ranges" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--ref", str(tmp_path / "r")]) == 2
    assert "prediction not found" in capsys.readouterr().err


def test_predict_applies_the_package_postprocessing_unless_told_not_to(tmp_path, capsys):
    from tskd.runtime import OnnxSegmenter, apply_postprocessing, segment_volume

    with one_torch_thread():
        folder, _ = make_package(tmp_path / "pkg", values=(0, 1, 4))
    volume = make_volume((7, 40, 52), seed=3)
    raw = segment_volume(OnnxSegmenter(folder, threads=1), volume)
    kept = apply_postprocessing(raw, "largest_per_class", [1, 4])
    assert not (raw == kept).all(), "the untrained model's map must have islands for this test to mean anything"
    meta = json.loads((folder / "tskd-model.json").read_text(encoding="utf-8"))
    meta["postprocessing"] = {"method": "largest_per_class", "decided_on": "test"}
    (folder / "tskd-model.json").write_text(json.dumps(meta), encoding="utf-8")
    image = write(tmp_path / "one.nii.gz", volume, (0.8, 0.8, 2.5))

    outputs = {}
    for name, extra in {"onnx": [], "torch": ["--backend", "torch"], "raw": ["--no-postprocessing"]}.items():
        out = tmp_path / f"{name}.nii.gz"
        with one_torch_thread():
            code = main(["predict", "--model", str(folder), "--input", str(image), "--output", str(out),
                         "--threads", "1", *extra])
        assert code == 0, capsys.readouterr().err
        outputs[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert (outputs["onnx"] == kept).all() and (outputs["raw"] == raw).all()
    # torch and onnxruntime may differ on a few boundary pixels (docs/student-package.md); the islands go in both
    assert (outputs["torch"] == kept).mean() > 0.999
    assert (outputs["torch"] == apply_postprocessing(outputs["torch"], "largest_per_class", [1, 4])).all()
