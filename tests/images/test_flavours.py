"""The opencl and cuda flavours of images/Dockerfile: built from this clone, and what each does on this machine
(no GPU, PoCL as the OpenCL device the host lends the container).

Slow: each flavour is a build (the cuda one installs about 1.5 GB of CUDA/cuDNN wheels). Skips, saying why,
without podman/buildah (.ci/run installs them).
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.images.test_image import RUN_FLAGS, _podman, build_runtime_image, require_podman, source_hash

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def flavour_image(flavour: str) -> str:
    require_podman()
    tag = f"localhost/openscore-test:{flavour}-{source_hash()[:16]}"
    if _podman("image", "exists", tag).returncode != 0:
        build_runtime_image(flavour, tag)
        for old in _podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/openscore-test").stdout.split():
            if old.startswith(f"localhost/openscore-test:{flavour}-") and old != tag:
                _podman("rmi", old)
    return tag


def devices(image: str, *args: str) -> dict:
    out = _podman("run", "--rm", *RUN_FLAGS, "--network=none", *args, "--entrypoint", "openscore", image,
                  "devices", "--json", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_the_opencl_image_uses_the_icd_the_host_mounts(tmp_path):
    image = flavour_image("opencl")
    # without a vendor ICD: no OpenCL device, and the inventory says why
    alone = devices(image)
    assert [d["kind"] for d in alone["devices"]] == ["cpu"]
    assert "opencl" in alone["notes"]
    # PoCL from this test's venv (pocl-binary-distribution) stands in for an FPGA vendor's runtime: its ICD file
    # in a vendors folder, the library it names mounted read-only at the same path
    site = Path(sysconfig.get_paths()["purelib"])
    libpocl = sorted((site / "pyopencl" / ".libs").glob("libpocl-*.so"))
    if not libpocl:
        pytest.skip(f"no PoCL in {site} (pip install pocl-binary-distribution)")
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "pocl.icd").write_text(f"{libpocl[0]}\n")
    for p in (tmp_path, vendors, vendors / "pocl.icd"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    inv = devices(image, "-v", f"{vendors}:/etc/OpenCL/vendors:ro", "-v", f"{site}:{site}:ro",
                  "-e", "POCL_CACHE_DIR=/tmp/pocl")
    opencl = [d for d in inv["devices"] if d["kind"] == "opencl"]
    assert opencl and opencl[0]["platform"] == "Portable Computing Language", inv


CUDA_CHECK = """
import json, onnxruntime as ort
from openscore.accelerators.loader import open_backend
try:
    open_backend("/nonexistent.onnx", "cuda:0")
    refused = ""
except Exception as e:
    refused = f"{type(e).__name__}: {e}"
print(json.dumps({"providers": ort.get_available_providers(), "refused": refused}))
"""


@pytest.mark.cuda_image
def test_the_cuda_image_runs_without_a_gpu_and_says_cuda_is_missing():
    image = flavour_image("cuda")
    inv = devices(image)
    assert [d["kind"] for d in inv["devices"]] == ["cpu"]  # no GPU on this machine
    assert "libcuda.so.1" in json.dumps(inv["notes"])  # and it says why: no driver
    out = _podman("run", "--rm", *RUN_FLAGS, "--network=none", "--entrypoint", "python3", image, "-c", CUDA_CHECK,
                  timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert "CUDAExecutionProvider" in got["providers"]  # onnxruntime-gpu, with its libraries, is installed
    # an explicit CUDA device is refused, naming the missing driver: never a silent fallback to the CPU
    assert got["refused"].startswith("DeviceNotFoundError: device cuda:0 requested but not present")
    assert "libcuda.so.1" in got["refused"]
    env = _podman("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout
    assert "nvidia/cu13/lib" in env and "nvidia/cudnn/lib" in env
    assert sys.version_info[:2] == (3, 11)  # the library path in the Dockerfile names python3.11
