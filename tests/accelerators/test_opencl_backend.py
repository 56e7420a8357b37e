"""OpenCL results match onnxruntime CPU within rtol=1e-4, atol=1e-5 (float32; measured error is ~1e-7)."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from openscore.accelerators import UnsupportedModelError
from openscore.accelerators.opencl_backend import OpenCLBackend, build_kernel_binary, parse_model

RTOL, ATOL = 1e-4, 1e-5


def reference(path, feeds):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def assert_matches(path, device, feeds, **options):
    out = OpenCLBackend(path, device, **options).run(feeds)
    ref = reference(path, feeds)
    assert out.keys() == ref.keys()
    for k in ref:
        assert out[k].shape == ref[k].shape, k
        np.testing.assert_allclose(out[k], ref[k], rtol=RTOL, atol=ATOL, err_msg=k)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 7, 33])  # small-M kernel, and the tiled one from 16 rows up
def test_mlp_matches_onnxruntime(mlp_path, opencl_device, batch):
    assert_matches(mlp_path, opencl_device, {"x": rand(batch, 64, seed=batch)})


@pytest.mark.parametrize("batch", [1, 5])
def test_cnn_matches_onnxruntime(cnn_path, opencl_device, batch):
    assert_matches(cnn_path, opencl_device, {"x": rand(batch, 3, 16, 16, seed=batch)})


def test_without_relu_fusion_same_results(cnn_path, opencl_device):
    assert_matches(cnn_path, opencl_device, {"x": rand(2, 3, 16, 16)}, fuse_relu=False)


def test_plan_cache_serves_many_batch_sizes(mlp_path, opencl_device):
    be = OpenCLBackend(mlp_path, opencl_device, plan_cache=2)
    sess = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"])
    for b in (1, 2, 3, 1, 4, 2):
        x = rand(b, 64, seed=b)
        np.testing.assert_allclose(be.run({"x": x})["y"], sess.run(None, {"x": x})[0], rtol=RTOL, atol=ATOL)
    mem = be.memory()
    assert mem.details["cached_plans"] == 2 and mem.used_bytes > mem.details["weights_bytes"] > 0
    assert mem.total_bytes == opencl_device.memory_bytes


CASES = [
    ("Gemm", {"a": [5, 6]}, {"y": [6, 4]}, {"b": rand(4, 5), "c": rand(6, 1)}, dict(transA=1, transB=1,
                                                                                     alpha=0.5, beta=2.0)),
    ("MatMul", {"a": [2, 3, 5, 4], "b": [2, 3, 4, 8]}, {"y": None}, {}, {}),
    ("MatMul", {"a": [3, 20, 4]}, {"y": None}, {"b": rand(4, 6)}, {}),
    ("Sub", {"a": [2, 3, 4]}, {"y": None}, {"b": rand(3, 1)}, {}),
    ("Div", {"a": [2, 3, 4], "b": [4]}, {"y": None}, {}, {}),
    ("Max", {"a": [5], "b": [5]}, {"y": None}, {}, {}),
    ("LeakyRelu", {"a": [3, 7]}, {"y": None}, {}, dict(alpha=0.2)),
    ("Clip", {"a": [3, 7]}, {"y": None}, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}),
    ("Softmax", {"a": [2, 3, 5]}, {"y": None}, {}, dict(axis=1)),
    ("LogSoftmax", {"a": [4, 6]}, {"y": None}, {}, {}),
    ("Transpose", {"a": [2, 3, 4]}, {"y": None}, {}, dict(perm=[2, 0, 1])),
    ("Concat", {"a": [2, 3, 2], "b": [2, 1, 2]}, {"y": None}, {}, dict(axis=1)),
    ("Unsqueeze", {"a": [2, 3]}, {"y": None}, {"axes": np.array([0, 3])}, {}),
    ("Conv", {"x": [2, 4, 9, 9]}, {"y": None}, {"w": rand(6, 2, 3, 3)},
     dict(group=2, strides=[2, 2], auto_pad="SAME_UPPER")),
    ("Conv", {"x": [2, 3, 8, 8]}, {"y": None}, {"w": rand(4, 3, 3, 2), "b": rand(4)},
     dict(dilations=[2, 1], pads=[1, 0, 2, 1])),
    ("Conv", {"x": [1, 2, 11]}, {"y": None}, {"w": rand(3, 2, 4)}, dict(pads=[1, 2])),
    ("MaxPool", {"x": [1, 2, 7, 7]}, {"y": None}, {}, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("AveragePool", {"x": [1, 2, 6, 6]}, {"y": None}, {}, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                                               count_include_pad=1)),
    ("GlobalMaxPool", {"x": [2, 3, 4, 5]}, {"y": None}, {}, {}),
]


@pytest.mark.parametrize("op,inputs,outputs,inits,attrs", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_single_operator_matches(tmp_path, opencl_device, single_op_model, op, inputs, outputs, inits, attrs):
    inits = {k: (v.astype(np.int64) if v.dtype.kind == "i" else v) for k, v in inits.items()}
    path = single_op_model(tmp_path / "m.onnx", op, inputs, outputs, inits, **attrs)
    feeds = {k: rand(*s, seed=i) for i, (k, s) in enumerate(inputs.items())}
    assert_matches(path, opencl_device, feeds)


def test_unsupported_operator_is_named_at_load(tmp_path, single_op_model):
    path = single_op_model(tmp_path / "m.onnx", "Cos", {"a": [3]}, {"y": [3]})
    with pytest.raises(UnsupportedModelError, match=r"operator Cos .* not supported by the OpenCL backend"):
        parse_model(path)


def test_unsupported_dtype_is_named_at_load(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(UnsupportedModelError, match=r"'x' has data type float64.*float32 only"):
        parse_model(model)


def test_unsupported_attribute_is_named(tmp_path, single_op_model):
    path = single_op_model(tmp_path / "m.onnx", "MaxPool", {"x": [1, 1, 4, 4]}, {"y": None},
                           kernel_shape=[2, 2], storage_order=1)
    with pytest.raises(UnsupportedModelError, match=r"MaxPool node .*storage_order=1"):
        parse_model(path)


def test_prebuilt_kernel_binary_fpga_flow(tmp_path, mlp_path, opencl_device):
    """FPGA boards load a device binary built offline; PoCL stands in for the board."""
    binary = build_kernel_binary(opencl_device, tmp_path / "kernels.bin")
    assert binary.stat().st_size > 0
    assert_matches(mlp_path, opencl_device, {"x": rand(4, 64)}, kernel_binary=str(binary))


def test_corrupt_kernel_binary_is_a_clear_error(tmp_path, mlp_path, opencl_device):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a binary")
    with pytest.raises(UnsupportedModelError, match="cannot load kernel binary"):
        OpenCLBackend(mlp_path, opencl_device, kernel_binary=str(bad))
