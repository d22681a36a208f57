"""What a command's path imports before it does its work: torch, transformers and diffusers cost
seconds of CPU in every process that imports them (torch about 2 s, transformers' SAM 3.5 s,
diffusers 1 s), so a path that does not use them must not import them. Each check runs the path in
a fresh interpreter (this one has them all) or, where the path needs torch anyway, blocks the heavy
module so that importing it fails."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import subprocess
import sys

HEAVY = ("torch", "monai", "transformers", "diffusers", "scipy", "matplotlib")


def test_segment_box_with_foundation_weights_finds_its_exported_graphs_without_torch(tmp_path):
    """``tskd segment-box --model litemedsam`` (and the service's zero-shot box model) find the ONNX
    graphs exported on first use by the weights' SHA-256: hashing must not load the SAM code (it
    took 7.3 s of CPU instead of 3.3 s for the whole command on one HC18 image). ``tskd predict``'s
    module path (ONNX students) is checked on the way."""
    weights = tmp_path / "lite_medsam.pth"
    weights.write_bytes(b"not really weights, only hashed" * 1000)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    exported = tmp_path / "box_models" / f"lite_medsam-{sha[:12]}"
    exported.mkdir(parents=True)
    (exported / "box_model.json").write_text("{}", encoding="utf-8")
    code = ("import sys\nimport tskd.cli.segment_box_cmd, tskd.cli.predict_cmd, tskd.inference.predict\n"
            "from tskd.inference.box_segment import zero_shot_box_model\n"
            "print('FOLDER', zero_shot_box_model(sys.argv[1], sys.argv[2]))")
    probe = code + f"\nprint('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", probe, str(weights), str(tmp_path / "box_models")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"FOLDER {exported}" in done.stdout.splitlines()
    assert "HEAVY []" in done.stdout.splitlines()


def test_weights_digests_need_no_torch_and_agree_with_the_loader(tmp_path):
    """The service names a workspace checkpoint (and ``tskd foundation import`` records a folder's
    files) by its digest, in the server process: the digest lives in tskd.teacher.digest, and the
    loader module gives the same functions."""
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "sam"}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"tensor bytes")
    file_sha = hashlib.sha256(b"tensor bytes").hexdigest()
    expected = hashlib.sha256(f"model.safetensors {file_sha}\n".encode()).hexdigest()
    code = ("import sys\nimport tskd.service.checkpoints, tskd.foundation.importing\n"
            "from tskd.teacher.digest import checkpoint_sha256\nprint('DIGEST', *checkpoint_sha256(sys.argv[1]))")
    probe = code + f"\nprint('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"DIGEST {expected} {len(b'tensor bytes')}" in done.stdout.splitlines()
    assert "HEAVY []" in done.stdout.splitlines()

    from tskd.teacher import checkpoints, digest

    assert checkpoints.checkpoint_sha256 is digest.checkpoint_sha256 and checkpoints.file_sha256 is digest.file_sha256
    assert checkpoints.CHECKPOINT_HELP is digest.CHECKPOINT_HELP


@contextlib.contextmanager
def _tskd_imported_again(blocked: list[str]):
    """Every ``tskd`` module imported afresh (torch and the other libraries stay loaded: cheap) with
    the ``blocked`` modules unimportable; afterwards ``sys.modules`` holds the original ``tskd``
    modules again, and none of the copies (tests compare classes such as the errors by identity)."""
    saved = {name: module for name, module in sys.modules.items() if name == "tskd" or name.startswith("tskd.")}
    blocked_saved = {name: sys.modules.get(name) for name in blocked}
    for name in saved:
        del sys.modules[name]
    for name in blocked:
        sys.modules[name] = None  # importing it now raises ImportError
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n == "tskd" or n.startswith("tskd.")]:
            del sys.modules[name]
        sys.modules.update(saved)
        for name, module in blocked_saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _monai_modules() -> list[str]:
    """MONAI and every MONAI module loaded so far: what ``_tskd_imported_again`` blocks to prove a path needs none."""
    return [m for m in sys.modules if m.startswith("monai.")] + ["monai"]


def test_the_training_pipeline_imports_the_diffusion_code_only_when_synthesis_runs():
    """``tskd train`` with synthesis disabled (the CPU default preset cpu-small) must not import
    diffusers (about 0.4 s of CPU per training process): with the diffusion modules made
    unimportable, the pipeline and its synthesis and transfer stages still import."""
    blocked = ["tskd.synthesis.model", "tskd.synthesis.pretrained", "tskd.synthesis.storage", "tskd.synthesis.task",
               "tskd.synthesis.sampler", "tskd.synthesis.unet", "diffusers"]
    with _tskd_imported_again(blocked):
        run = importlib.import_module("tskd.pipeline.run")
        synthesis_stage = importlib.import_module("tskd.pipeline.synthesis_stage")
        transfer_stage = importlib.import_module("tskd.pipeline.transfer_stage")
        assert callable(run.run_stages) and callable(synthesis_stage.run_synthesis_stage)
        assert callable(transfer_stage.build_transfer_set)


def test_a_teacher_only_run_imports_no_monai():
    """``tskd teacher finetune`` (and ``tskd train`` up to the teacher) run the data and teacher
    stages only: nothing they import needs MONAI (whose import costs 7.5 s of CPU per process; only
    the ViT students use it). With MONAI made unimportable, the pipeline, the teacher stage and the
    ``teacher`` command still import."""
    blocked = _monai_modules()
    with _tskd_imported_again(blocked):
        run = importlib.import_module("tskd.pipeline.run")
        teacher_cmd = importlib.import_module("tskd.cli.teacher_cmd")
        teacher_stage = importlib.import_module("tskd.pipeline.teacher_stage")
        assert callable(run.run_stages) and callable(teacher_cmd.register)
        assert teacher_stage.teacher_entry({"architecture": "litemedsam"})["architecture"] == "litemedsam"
        importlib.import_module("tskd.student.storage")  # a stage's save_student


def test_evaluate_without_surface_distances_imports_no_monai(tmp_path, capsys):
    """``tskd evaluate --no-surface`` scores Dice only, and runs with MONAI made unimportable (the
    surface distances do not use MONAI either: test_a_unet_student_run_imports_no_monai)."""
    import numpy as np
    import SimpleITK as sitk

    reference = np.zeros((4, 16, 16), np.uint8)
    reference[1:3, 4:12, 4:12] = 1
    prediction = reference.copy()
    prediction[1:3, 4:12, 4:8] = 0  # half of the object: Dice 2*128/(128+256) = 0.667
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(prediction), str(tmp_path / "pred" / "case_1.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(reference), str(tmp_path / "ref" / "case_1.nii.gz"))
    blocked = _monai_modules()
    with _tskd_imported_again(blocked):
        main = importlib.import_module("tskd.cli.main").main
        code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--no-surface"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "case_1: mean Dice 0.667" in out


def test_a_unet_student_run_imports_no_monai():
    """``tskd train`` with a U-Net student (every preset's default) builds, trains and exports it and
    scores the export's validation with surface distances: none of it imports MONAI (about 8 s of wall
    time per process; its ``__init__`` imports all of MONAI, transformers' BERT included). The U-Net
    body is plain torch (tskd.student.unet_body), HD95/ASSD use scipy, and the ViT/MAE code, which
    does use MONAI, is imported only when a ViT student is built."""
    import numpy as np
    import torch

    blocked = _monai_modules()
    with _tskd_imported_again(blocked):  # in this process, with MONAI made unimportable
        for name in ("tskd.pipeline.run", "tskd.student", "tskd.pipeline.student_stage", "tskd.pipeline.export_stage"):
            importlib.import_module(name)
        build_student = importlib.import_module("tskd.student").build_student
        case_metrics = importlib.import_module("tskd.evaluation.metrics").case_metrics
        student = build_student("unet_small", num_classes=3, input_size=64)
        logits, features = student.forward_with_features(torch.zeros(1, 1, 64, 64))
        reference = np.zeros((4, 16, 16), np.uint8)
        reference[1:3, 4:12, 4:12] = 1
        prediction = np.roll(reference, 2, axis=2)  # shifted 2 voxels of 0.5 mm along the last axis
        metrics = case_metrics(prediction, reference, labels=[1], spacing=(2.5, 1.0, 0.5))
    assert tuple(logits.shape) == (1, 3, 64, 64) and tuple(features.shape) == (1, 256, 4, 4)
    assert metrics.hd95_mm[1] == 1.0  # the 2-voxel shift along the 0.5 mm axis
