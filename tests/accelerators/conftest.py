"""Models are generated in-process (accelerators.sample_models); nothing binary is committed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from openscore.accelerators import sample_models


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_path(models_dir):
    return str(sample_models.save(sample_models.mlp(), models_dir / "mlp.onnx"))


@pytest.fixture(scope="session")
def cnn_path(models_dir):
    return str(sample_models.save(sample_models.cnn(), models_dir / "cnn.onnx"))


@pytest.fixture(scope="session")
def opencl_device():
    """The first OpenCL device (PoCL's CPU device in CI)."""
    cl = pytest.importorskip("pyopencl", reason="pyopencl not installed (pip install pyopencl "
                                                "pocl-binary-distribution)")
    from openscore.accelerators.devices import opencl_devices
    devs, why = opencl_devices()
    if not devs:
        pytest.skip(f"no OpenCL device: {why}")
    del cl
    return devs[0]


@pytest.fixture
def single_op_model():
    """single_op_model(path, op, inputs, outputs, inits=None, opset=17, **attrs) -> path of a one-node model."""
    return _single_op_model


def _single_op_model(path, op: str, inputs: dict, outputs: dict, inits: dict | None = None, opset: int = 17,
                    **attrs) -> str:
    """A one-node model: inputs/outputs map name -> shape (None entries are dynamic)."""
    vi = lambda n, s, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, s)  # noqa: E731
    init_protos = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    node = helper.make_node(op, list(inputs) + list(inits or {}), list(outputs), **attrs)
    graph = helper.make_graph([node], op, [vi(k, s) for k, s in inputs.items()],
                              [vi(k, s) for k, s in outputs.items()], init_protos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)
