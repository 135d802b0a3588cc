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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from backend.inference.preprocess import Preprocess
from backend.storage import atomic_path
from worker.ml.heads import TrainedHead

if TYPE_CHECKING:
    import onnx

    from worker.ml.ensemble import Ensemble

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
    preprocess: Preprocess | Sequence[Preprocess],
    labels: Sequence[str],
    out_path: Path,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write an image classifier as TorchScript (traced), with the same metadata as ONNX.
    An ensemble takes one input per backbone: ``preprocess`` lists each one's."""
    model = model.eval()
    many = not isinstance(preprocess, Preprocess)
    pps = list(preprocess) if not isinstance(preprocess, Preprocess) else [preprocess]
    samples = tuple(_sample_input(pp) for pp in pps)
    with torch.no_grad(), torchscript_without_deprecation():
        traced = torch.jit.trace(model, samples)
    props = dict(metadata or {})
    if many:
        backbones = json.loads(props.get("backbones", "[]")) or [str(i) for i in range(len(pps))]
        props = ensemble_metadata(pps, backbones, props)
    extra = _artifact_metadata(pps[0], labels, props)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        with torchscript_without_deprecation():
            torch.jit.save(traced, str(tmp), _extra_files=extra)
            loaded = torch.jit.load(str(tmp))
        with torch.no_grad():
            expected = model(*samples).float().numpy()
            got = loaded(*samples).numpy()
        err = parity_error(got, expected)
        if not err <= PARITY_TOLERANCE:
            raise RuntimeError(f"exported TorchScript model differs from PyTorch by {err:.2e}")
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
    from onnx import TensorProto, helper

    model = onnx.load(str(features_path))
    graph = model.graph
    features = graph.output[0].name
    x = features
    x = append_head(graph, head, x, "head")
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


class EnsembleClassifier(nn.Module):
    """Auto's ensemble as one network: one input per backbone (each preprocessed its own
    way), each backbone's pooled features (with ``flip``, the mean over the image and its
    mirror), each member's head on its backbones' concatenated features, and the members'
    softmax probabilities averaged with their weights."""

    def __init__(
        self,
        backbones: Sequence[nn.Module],
        members: Sequence[tuple[Sequence[int], nn.Module, float]],
        flip: bool,
    ) -> None:
        super().__init__()
        self.backbones = nn.ModuleList(backbones)
        self.heads = nn.ModuleList([head for _, head, _ in members])
        self.inputs = [list(indices) for indices, _, _ in members]
        self.weights = [float(weight) for _, _, weight in members]
        self.flip = flip

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        feats = []
        for net, x in zip(self.backbones, images, strict=True):
            if self.flip:
                both = net(torch.cat([x, torch.flip(x, dims=[3])], dim=0))
                feats.append(both.reshape(2, x.shape[0], -1).mean(dim=0))
            else:
                feats.append(net(x))
        total = torch.zeros(())
        for head, indices, weight in zip(self.heads, self.inputs, self.weights, strict=True):
            z = head(torch.cat([feats[i] for i in indices], dim=1))
            total = total + weight * torch.softmax(z, dim=-1)
        return total


def build_ensemble_classifier(backbones: Sequence[nn.Module], ensemble: Ensemble) -> nn.Module:
    """The ensemble's network from its backbones' feature modules (in ensemble.backbones order)."""
    index = {name: i for i, name in enumerate(ensemble.backbones)}
    members = [
        ([index[b] for b in m.backbones], m.head.to_torch(), m.weight) for m in ensemble.members
    ]
    return EnsembleClassifier(backbones, members, ensemble.flip).eval()


def input_names(n: int) -> list[str]:
    """Graph input names: ``input`` for the first backbone (as a single model has), then
    ``input_1``, ``input_2``..."""
    return ["input", *(f"input_{i}" for i in range(1, n))]


def ensemble_metadata(
    preprocesses: Sequence[Preprocess], backbones: Sequence[str], metadata: dict[str, str] | None
) -> dict[str, str]:
    """What an ensemble's artifact adds: the preprocessing of each input, the backbones."""
    return {
        **(metadata or {}),
        "inputs": json.dumps(
            [
                {"name": name, "backbone": b, "preprocess": pp.to_dict()}
                for name, b, pp in zip(
                    input_names(len(backbones)), backbones, preprocesses, strict=True
                )
            ]
        ),
        "backbones": json.dumps(list(backbones)),
    }


def _flip_nodes(prefix: str, source: str, target: str) -> list[onnx.NodeProto]:
    """Nodes that feed ``target`` with [source; source mirrored] along the batch axis."""
    from onnx import helper, numpy_helper

    def const(name: str, value: int) -> onnx.NodeProto:
        tensor = numpy_helper.from_array(np.array([value], dtype=np.int64), f"{prefix}{name}")
        return helper.make_node("Constant", [], [f"{prefix}{name}"], value=tensor)

    slice_args = [source, *(f"{prefix}{n}" for n in ("start", "end", "axis", "step"))]
    return [
        const("start", -1),
        const("end", -(2**62)),
        const("axis", 3),
        const("step", -1),
        helper.make_node("Slice", slice_args, [f"{prefix}mirrored"]),
        helper.make_node("Concat", [source, f"{prefix}mirrored"], [target], axis=0),
    ]


def compose_ensemble_onnx(
    feature_graphs: Sequence[Path],
    ensemble: Ensemble,
    preprocesses: Sequence[Preprocess],
    labels: Sequence[str],
    out_path: Path,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """The ensemble as one ONNX graph, built from each backbone's cached pooled-feature
    graph (no fresh export): inputs as :func:`input_names`, output ``probabilities``.
    Verified against ``ensemble.predict_proba`` on each feature graph's own outputs."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    names = input_names(len(feature_graphs))
    graph = helper.make_graph([], "autodl_ensemble", [], [])
    opset = ONNX_OPSET
    feats: list[str] = []
    for i, path in enumerate(feature_graphs):
        prefix = f"b{i}_"
        sub = compose.add_prefix(onnx.load(str(path)), prefix)
        opset = max([opset, *(o.version for o in sub.opset_import if o.domain in ("", "ai.onnx"))])
        size = preprocesses[i].input_size
        graph.input.append(
            helper.make_tensor_value_info(names[i], TensorProto.FLOAT, ["batch", 3, size, size])
        )
        sub_in, sub_out = sub.graph.input[0].name, sub.graph.output[0].name
        dim = sub.graph.output[0].type.tensor_type.shape.dim[1].dim_value
        if ensemble.flip:
            graph.node.extend(_flip_nodes(prefix, names[i], sub_in))
        else:
            graph.node.append(helper.make_node("Identity", [names[i]], [sub_in]))
        graph.node.extend(sub.graph.node)
        graph.initializer.extend(sub.graph.initializer)
        graph.value_info.extend(sub.graph.value_info)
        if ensemble.flip:
            shape = numpy_helper.from_array(np.array([2, -1, dim], dtype=np.int64), f"{prefix}pair")
            axes = numpy_helper.from_array(np.array([0], dtype=np.int64), f"{prefix}mean_axes")
            graph.initializer.extend([shape, axes])
            graph.node.extend(
                [
                    helper.make_node("Reshape", [sub_out, shape.name], [f"{prefix}pairs"]),
                    helper.make_node(
                        "ReduceMean", [f"{prefix}pairs", axes.name], [f"{prefix}feat"], keepdims=0
                    ),
                ]
            )
            feats.append(f"{prefix}feat")
        else:
            feats.append(sub_out)

    index = {name: i for i, name in enumerate(ensemble.backbones)}
    outputs = []
    for j, member in enumerate(ensemble.members):
        x = f"m{j}_features"
        parts = [feats[index[b]] for b in member.backbones]
        graph.node.append(
            helper.make_node("Concat", parts, [x], axis=1)
            if len(parts) > 1
            else helper.make_node("Identity", parts, [x])
        )
        x = append_head(graph, member.head, x, f"m{j}_head")
        weight = numpy_helper.from_array(np.array(member.weight, dtype=np.float32), f"m{j}_weight")
        graph.initializer.append(weight)
        graph.node.append(helper.make_node("Softmax", [x], [f"m{j}_p"], axis=-1))
        graph.node.append(helper.make_node("Mul", [f"m{j}_p", weight.name], [f"m{j}_wp"]))
        outputs.append(f"m{j}_wp")
    graph.node.append(helper.make_node("Sum", outputs, ["probabilities"]))
    graph.output.append(
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(labels)])
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = onnx.load(str(feature_graphs[0]), load_external_data=False).ir_version
    props = ensemble_metadata(preprocesses, ensemble.backbones, metadata)
    for key, value in _artifact_metadata(preprocesses[0], labels, props).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)

    g = torch.Generator().manual_seed(0)
    samples = [
        torch.randn(2, 3, pp.input_size, pp.input_size, generator=g).numpy() for pp in preprocesses
    ]
    plain: dict[str, np.ndarray] = {}
    mirrored: dict[str, np.ndarray] = {}
    for backbone, graph_path, sample in zip(
        ensemble.backbones, feature_graphs, samples, strict=True
    ):
        run = _onnxruntime_run(graph_path)
        plain[backbone] = run(sample)
        mirrored[backbone] = run(np.ascontiguousarray(sample[..., ::-1]))
    expected = ensemble.predict_proba(plain, mirrored)
    with atomic_path(Path(out_path)) as tmp:
        onnx.save(model, str(tmp))
        err = parity_error(_onnxruntime_multi(tmp)(samples), expected)
        if not err <= PARITY_TOLERANCE:
            raise RuntimeError(f"composed ONNX ensemble differs from the ensemble by {err:.2e}")
    return Path(out_path)


def _onnxruntime_multi(path: Path) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda xs: np.asarray(session.run(None, dict(zip(names, xs, strict=True)))[0])


def append_head(graph: Any, head: TrainedHead, x: str, prefix: str) -> str:
    """The head's dense layers (and ReLUs) appended to an ONNX graph after tensor ``x``, names
    starting with ``prefix``; returns the logits' tensor name."""
    from onnx import helper, numpy_helper

    for i, layer in enumerate(head.layers):
        name = f"{prefix}_{i}"
        weight = numpy_helper.from_array(layer.weight.T.astype(np.float32), f"{name}_weight")
        bias = numpy_helper.from_array(layer.bias.astype(np.float32), f"{name}_bias")
        graph.initializer.extend([weight, bias])
        graph.node.append(helper.make_node("MatMul", [x, weight.name], [f"{name}_matmul"]))
        graph.node.append(helper.make_node("Add", [f"{name}_matmul", bias.name], [name]))
        x = name
        if layer.relu:
            graph.node.append(helper.make_node("Relu", [x], [f"{x}_relu"]))
            x = f"{x}_relu"
    return x
