"""Export trained classifiers (and featurization backbones) to ONNX and TorchScript.

Every artifact is written to a temporary name in its destination folder, checked
against the PyTorch model, then renamed: a listed artifact is always complete.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.inference.preprocess import Preprocess
from backend.storage import atomic_path
from worker.ml.heads import TrainedHead

AUTODL_VERSION = "0.1.0"
ONNX_OPSET = 18
# Largest difference an exported graph may show against PyTorch, relative to the output's
# scale (probabilities: 1; pooled features: their largest magnitude, often 5-20).
PARITY_TOLERANCE = 1e-4


class Classifier(nn.Module):
    """Backbone features -> head logits -> softmax probabilities."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.backbone(x)), dim=-1)


def build_classifier(backbone_module: nn.Module, head: TrainedHead | nn.Module) -> nn.Module:
    """Compose a pooled-feature backbone and a head into an image -> probabilities model."""
    head_module = head.to_torch() if isinstance(head, TrainedHead) else head
    return Classifier(backbone_module, head_module).eval()


@contextmanager
def torchscript_without_deprecation() -> Iterator[None]:
    """torch 2.14 deprecates TorchScript for torch.export with a FutureWarning on every
    trace, save and load; TorchScript is a format autodl exports on purpose, so that one
    warning (and only it) is silenced where autodl calls torch.jit."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning
        )
        yield


def _sample_input(preprocess: Preprocess, batch: int = 2) -> torch.Tensor:
    # Batch 2, not 1: the exporter specialises dimensions of size 0 and 1.
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, preprocess.input_size, preprocess.input_size, generator=g)


def parity_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference, divided by the expected output's scale (at least 1)."""
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(got - expected).max()) / scale


def _check_parity(
    run: Callable[[np.ndarray], np.ndarray], model: nn.Module, sample: torch.Tensor, what: str
) -> None:
    with torch.no_grad():
        expected = model(sample).float().numpy()
    got = run(sample.numpy())
    err = parity_error(got, expected)
    if not err <= PARITY_TOLERANCE:
        raise RuntimeError(
            f"exported {what} differs from the PyTorch model by {err:.2e} of its scale"
        )


def _onnxruntime_run(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0])


def write_onnx(
    model: nn.Module,
    sample: torch.Tensor,
    out_path: Path,
    *,
    output_name: str,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export ``model`` (input ``input``, dynamic batch), verify it in onnxruntime, rename."""
    model = model.eval()
    out_path = Path(out_path)
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (sample,),
            dynamo=True,
            verbose=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=[output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    assert program is not None
    for key, value in (metadata or {}).items():
        program.model.metadata_props[key] = value
    with atomic_path(out_path) as tmp:
        program.save(str(tmp))
        _check_parity(_onnxruntime_run(tmp), model, sample, "ONNX model")
    return out_path


def _artifact_metadata(
    preprocess: Preprocess, labels: Sequence[str], metadata: dict[str, str] | None
) -> dict[str, str]:
    """String metadata every artifact carries: caller's keys plus labels and preprocessing."""
    props = {
        **(metadata or {}),
        "labels": json.dumps(list(labels)),
        "preprocess": json.dumps(preprocess.to_dict()),
        "autodl_version": AUTODL_VERSION,
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}


def export_onnx(
    model: nn.Module,
    preprocess: Preprocess,
    labels: Sequence[str],
    out_path: Path,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write an image classifier as ONNX: ``input`` (N,3,H,W) -> ``probabilities`` (N,C).

    Labels, preprocessing and autodl's version travel in the metadata, so a predictor needs
    nothing but the file.
    """
    props = _artifact_metadata(preprocess, labels, metadata)
    return write_onnx(
        model, _sample_input(preprocess), out_path, output_name="probabilities", metadata=props
    )


def export_torchscript(
    model: nn.Module,
    preprocess: Preprocess,
    labels: Sequence[str],
    out_path: Path,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write an image classifier as TorchScript (traced), with the same metadata as ONNX."""
    model = model.eval()
    sample = _sample_input(preprocess)
    with torch.no_grad(), torchscript_without_deprecation():
        traced = torch.jit.trace(model, sample)
    extra = _artifact_metadata(preprocess, labels, metadata)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        with torchscript_without_deprecation():
            torch.jit.save(traced, str(tmp), _extra_files=extra)
            loaded = torch.jit.load(str(tmp))

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return loaded(torch.from_numpy(x)).numpy()

        _check_parity(run, model, sample, "TorchScript model")
    return out_path


def compose_classifier_onnx(
    features_path: Path,
    head: TrainedHead,
    preprocess: Preprocess,
    labels: Sequence[str],
    out_path: Path,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """The classifier as ONNX without re-exporting the backbone: the cached pooled-feature
    graph with the head's dense layers and a softmax appended (milliseconds, not the
    tens of seconds a fresh export takes). Verified against ``head.predict_proba``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(features_path))
    graph = model.graph
    features = graph.output[0].name
    x = features
    for i, layer in enumerate(head.layers):
        weight = numpy_helper.from_array(layer.weight.T.astype(np.float32), f"head_{i}_weight")
        bias = numpy_helper.from_array(layer.bias.astype(np.float32), f"head_{i}_bias")
        graph.initializer.extend([weight, bias])
        graph.node.append(helper.make_node("MatMul", [x, weight.name], [f"head_{i}_matmul"]))
        graph.node.append(helper.make_node("Add", [f"head_{i}_matmul", bias.name], [f"head_{i}"]))
        x = f"head_{i}"
        if layer.relu:
            graph.node.append(helper.make_node("Relu", [x], [f"{x}_relu"]))
            x = f"{x}_relu"
    graph.node.append(helper.make_node("Softmax", [x], ["probabilities"], axis=-1))
    batch = graph.output[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, len(labels)])
    )
    del model.metadata_props[:]
    for key, value in _artifact_metadata(preprocess, labels, metadata).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)

    sample = _sample_input(preprocess).numpy()
    expected = head.predict_proba(_onnxruntime_run(features_path)(sample))
    with atomic_path(Path(out_path)) as tmp:
        onnx.save(model, str(tmp))
        err = parity_error(_onnxruntime_run(tmp)(sample), expected)
        if not err <= PARITY_TOLERANCE:
            raise RuntimeError(
                f"composed ONNX classifier differs from the head by {err:.2e} of its scale"
            )
    return Path(out_path)
