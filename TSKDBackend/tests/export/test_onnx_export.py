from __future__ import annotations

import os
import stat

import onnx
import pytest
import torch

from tskd.errors import TSKDError
from tskd.export import OnnxVerificationError, export_onnx, verify_onnx
from tskd.student import FeatureProjector, StudentWithProjector, build_student


def _structured(batch: int, size: int) -> torch.Tensor:
    """Smooth gradients, a bright square and a step edge: inputs with real structure."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images = [xx + yy, ((xx.abs() < 0.4) & (yy.abs() < 0.4)).float() * 3, torch.sign(xx) * 2, torch.sin(6 * xx) * yy]
    return torch.stack(images[:batch]).unsqueeze(1)


@pytest.fixture(scope="module", params=["unet_small", "vit_tiny"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = build_student(request.param, num_classes=3, input_size=64)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", input_size=64, num_classes=3)
    return model, path


def test_graph_has_named_io_and_a_dynamic_batch(exported):
    model, path = exported
    graph = onnx.load(str(path)).graph
    (inp,), (out,) = graph.input, graph.output
    assert inp.name == "image" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 1, 64, 64] and out_dims == ["batch", 3, 64, 64]
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary files left
    # the process's umask, like the package's other files (a mkstemp temporary file left it 0600: unreadable
    # to the other users of a shared server's workspace)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert model.training  # export works on a copy; the model keeps its mode


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch(exported, batch):
    model, path = exported
    torch.manual_seed(1)
    for inputs in (torch.randn(batch, 1, 64, 64), _structured(batch, 64)):
        result = verify_onnx(model, path, inputs)
        assert result["argmax_agreement"] == 1.0
        assert result["max_abs_diff"] < 1e-3
        assert result["pixels"] == batch * 64 * 64


def test_verification_catches_a_different_model(exported, tmp_path):
    model, path = exported
    changed = build_student(model.name, num_classes=3, input_size=64)
    with pytest.raises(OnnxVerificationError, match="disagrees") as info:
        verify_onnx(changed, path, torch.randn(2, 1, 64, 64))
    assert isinstance(info.value, TSKDError)
    with pytest.raises(OnnxVerificationError, match="not found"):
        verify_onnx(model, tmp_path / "missing.onnx", torch.randn(1, 1, 64, 64))


def test_export_unwraps_the_projector_and_checks_classes(tmp_path):
    torch.manual_seed(0)
    student = build_student("unet_tiny", num_classes=2, input_size=32)
    wrapped = StudentWithProjector(student=student, projector=FeatureProjector(student.feature_channels, 8))
    path = export_onnx(wrapped, tmp_path / "sub" / "tiny.onnx", input_size=32, num_classes=2)
    assert verify_onnx(wrapped, path, torch.randn(3, 1, 32, 32))["argmax_agreement"] == 1.0
    with pytest.raises(ValueError, match="expected"):
        export_onnx(student, tmp_path / "bad.onnx", input_size=32, num_classes=4)
    assert not (tmp_path / "bad.onnx").exists()
