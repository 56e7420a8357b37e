"""Small ONNX models generated in-process (an MLP and a CNN): tests, benchmarks and smoke checks use them,
so the repository carries no binary model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp(in_features: int = 64, hidden: int = 128, layers: int = 2, classes: int = 10, seed: int = 0,
        softmax: bool = True) -> onnx.ModelProto:
    """x[N, in] -> (Gemm + Relu) * layers -> Gemm -> Softmax; `N` is dynamic."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev, width = [], [], "x", in_features
    for i in range(layers):
        w = rng.standard_normal((hidden, width)) / np.sqrt(width)
        inits += [_init(f"w{i}", w), _init(f"b{i}", rng.standard_normal(hidden) * 0.1)]
        nodes += [helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"g{i}"], transB=1, name=f"fc{i}"),
                  helper.make_node("Relu", [f"g{i}"], [f"h{i}"], name=f"relu{i}")]
        prev, width = f"h{i}", hidden
    inits += [_init("wo", rng.standard_normal((width, classes)) / np.sqrt(width)), _init("bo", np.zeros(classes))]
    last = "logits" if softmax else "y"
    nodes.append(helper.make_node("MatMul", [prev, "wo"], ["mm"], name="out_mm"))
    nodes.append(helper.make_node("Add", ["mm", "bo"], [last], name="out_bias"))
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=-1, name="softmax"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])
    return _model(nodes, [x], [y], inits, "mlp")


def cnn(channels: int = 3, size: int = 16, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """x[N, C, H, W] -> Conv/BN/Relu/MaxPool -> Conv(group, pad)/Relu/AveragePool -> Conv/GlobalAveragePool
    -> Flatten -> Gemm -> Sigmoid; plus a second output (Tanh of a transposed, concatenated branch)."""
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape) * 0.3

    inits = [_init("c1w", r(8, channels, 3, 3)), _init("c1b", r(8)),
             _init("bn_s", 1 + 0.1 * r(8)), _init("bn_b", r(8)), _init("bn_m", r(8)),
             _init("bn_v", 0.5 + np.abs(r(8))),
             _init("c2w", r(16, 4, 3, 3)), _init("c2b", r(16)),
             _init("c3w", r(16, 16, 1, 1)),
             _init("fw", r(16, classes)), _init("fb", r(classes)),
             _init("scale", np.full((1, classes), 0.5)),
             numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape2d")]
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1], group=2, strides=[1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("Conv", ["p2", "c3w"], ["c3"]),
        helper.make_node("GlobalAveragePool", ["c3"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"]),
        helper.make_node("Mul", ["logits", "scale"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["y"]),
        helper.make_node("Transpose", ["p1"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t1", "shape2d"], ["flat2"]),
        helper.make_node("Concat", ["flat2", "logits"], ["cat"], axis=1),
        helper.make_node("Tanh", ["cat"], ["z"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", None])
    return _model(nodes, [x], [y, z], inits, "cnn")


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    onnx.save(model, str(path))
    return path
