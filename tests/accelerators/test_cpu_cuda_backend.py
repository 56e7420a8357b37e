import numpy as np
import onnxruntime as ort
import pytest

from openscore.accelerators import DeviceNotFoundError, InvalidDeviceNameError
from openscore.accelerators.cpu_backend import CpuBackend
from openscore.accelerators.cuda_backend import check_providers
from openscore.accelerators.devices import cuda_devices
from openscore.accelerators.loader import open_backend


def test_cpu_backend_specs_options_and_run(mlp_path):
    be = CpuBackend(mlp_path, intra_op_num_threads=1, inter_op_num_threads=1, enable_cpu_mem_arena=False)
    assert [(t.name, t.dtype, t.shape) for t in be.inputs] == [("x", np.float32, (None, 64))]
    assert be.outputs[0].shape == (None, 10) and be.batchable
    assert be.providers() == ["CPUExecutionProvider"] and be.device.name == "cpu"
    x = np.ones((3, 64), np.float32)
    ref = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(be.run({"x": x})["y"], ref, rtol=1e-6, atol=1e-7)


def test_unknown_backend_option_is_named(mlp_path):
    with pytest.raises(InvalidDeviceNameError, match="intra_threads"):
        open_backend(mlp_path, "cpu", {"intra_threads": 1})


def test_provider_check_refuses_silent_cpu_fallback():
    check_providers("CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:0")
    with pytest.raises(DeviceNotFoundError, match="fell back to the CPU"):
        check_providers("CUDAExecutionProvider", ["CPUExecutionProvider"], "cuda:0")


def test_explicit_cuda_without_gpu_is_startup_error(mlp_path):
    if cuda_devices()[0]:
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeviceNotFoundError, match="cuda:0 requested"):
        open_backend(mlp_path, "cuda:0")


def test_auto_picks_a_really_usable_device(mlp_path):
    be = open_backend(mlp_path, "auto")
    assert be.device.kind in ("cpu", "cuda", "opencl")
    if be.device.kind == "cuda":
        assert "CUDAExecutionProvider" in be.providers()


@pytest.mark.gpu
def test_cuda_backend_runs_on_gpu(mlp_path):
    devs, why = cuda_devices()
    if not devs:
        pytest.skip(f"no CUDA GPU: {why}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without CUDAExecutionProvider (install the 'cuda' extra: onnxruntime-gpu)")
    from openscore.accelerators.cuda_backend import CudaBackend
    for io_binding in (False, True):
        be = CudaBackend(mlp_path, devs[0], io_binding=io_binding)
        assert be.providers()[0] == "CUDAExecutionProvider"
        x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
        ref = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(be.run({"x": x})["y"], ref, rtol=1e-3, atol=1e-4)
