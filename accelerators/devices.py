"""Device naming, inventory and explicit selection.

Names: `cpu`, `cuda` / `cuda:N`, `opencl` / `opencl:<platform>:<device>`, `fpga` / `fpga:N` (the Nth OpenCL
device of type ACCELERATOR) and `auto` (chosen per model by `accelerators.loader`). Discovery needs no GPU
library: CUDA devices come from the driver (libcuda) through ctypes, OpenCL ones from pyopencl when installed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import asdict, dataclass, field

from .errors import DeviceNotFoundError, InvalidDeviceNameError

_log = logging.getLogger("openscore.accelerators")
DEVICE_FORMS = "cpu, cuda, cuda:N, opencl, opencl:<platform>:<device>, fpga, fpga:N, auto"


@dataclass(frozen=True)
class DeviceInfo:
    """One device as the inventory reports it; `name` is its canonical device string."""

    name: str
    kind: str  # "cpu" | "cuda" | "opencl"
    description: str = ""
    type: str = "CPU"  # CPU | GPU | ACCELERATOR | OTHER
    memory_bytes: int | None = None
    index: int | None = None  # CUDA ordinal
    platform_index: int | None = None  # OpenCL
    device_index: int | None = None  # OpenCL, within its platform
    platform: str = ""
    vendor: str = ""
    compute_units: int | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed device string, not yet matched against the machine."""

    kind: str  # "cpu" | "cuda" | "opencl" | "fpga" | "auto"
    index: int | None = None
    platform_index: int | None = None
    device_index: int | None = None

    def __str__(self) -> str:
        if self.kind == "opencl" and self.platform_index is not None:
            return f"opencl:{self.platform_index}:{self.device_index}"
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


_FORM = re.compile(r"^(cpu|auto)$|^(cuda|fpga)(?::(\d+))?$|^opencl(?::(\d+):(\d+))?$")


def parse_device(text: str) -> DeviceRequest:
    """Parse a device string; a malformed one is an error listing the valid forms."""
    t = (text or "").strip().lower()
    m = _FORM.match(t)
    if not m:
        raise InvalidDeviceNameError(f"invalid device {text!r}; expected one of: {DEVICE_FORMS}")
    if m.group(1):
        return DeviceRequest(m.group(1))
    if m.group(2):
        return DeviceRequest(m.group(2), int(m.group(3)) if m.group(3) else None)
    if m.group(4) is not None:
        return DeviceRequest("opencl", platform_index=int(m.group(4)), device_index=int(m.group(5)))
    return DeviceRequest("opencl")


# ---------------------------------------------------------------- inventory

def cpu_device() -> DeviceInfo:
    desc = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    desc = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = None
    return DeviceInfo("cpu", "cpu", desc, "CPU", mem, compute_units=os.cpu_count())


def cuda_devices() -> tuple[list[DeviceInfo], str | None]:
    """CUDA devices from the driver API; returns (devices, why none) without raising."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return [], "no NVIDIA driver (libcuda.so.1 not found)"
    if lib.cuInit(0) != 0:
        return [], "NVIDIA driver present but cuInit failed (no usable GPU)"
    count = ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return [], "cuDeviceGetCount failed"
    ort_cuda = _ort_has_cuda()
    out = []
    for i in range(count.value):
        dev = ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        mem = ctypes.c_size_t()
        total = lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev) == 0
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
        out.append(DeviceInfo(
            f"cuda:{i}", "cuda", name.value.decode(errors="replace"), "GPU",
            mem.value if total else None, index=i, vendor="NVIDIA",
            extra={"compute_capability": f"{major.value}.{minor.value}",
                   "onnxruntime_cuda_provider": ort_cuda}))
    return out, None if out else "driver reports no CUDA devices"


def _ort_has_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def opencl_devices() -> tuple[list[DeviceInfo], str | None]:
    """OpenCL devices of every platform; returns (devices, why none) without raising."""
    try:
        import pyopencl as cl
    except ImportError:
        return [], "pyopencl is not installed"
    except Exception as e:  # a broken install: whatever its import raises means no OpenCL here
        return [], _broken_opencl(f"pyopencl cannot be imported ({type(e).__name__}: {e})")
    try:
        platforms = cl.get_platforms()
    except Exception as e:  # cl.Error, or no get_platforms at all (an empty pyopencl folder left by a package)
        if isinstance(e, getattr(cl, "Error", ())):
            return [], f"no OpenCL platform ({e})"
        return [], _broken_opencl(f"pyopencl is broken ({type(e).__name__}: {e})")
    out = []
    for p_i, p in enumerate(platforms):
        try:
            devs = p.get_devices()
            for d_i, d in enumerate(devs):
                out.append(DeviceInfo(
                    f"opencl:{p_i}:{d_i}", "opencl", d.name.strip(), _cl_type(cl, d.type), int(d.global_mem_size),
                    platform_index=p_i, device_index=d_i, platform=p.name.strip(), vendor=d.vendor.strip(),
                    compute_units=int(d.max_compute_units),
                    extra={"version": d.version.strip(), "compiler_available": bool(d.compiler_available)}))
        except Exception as e:  # one platform's driver failing hides only that platform
            _log.warning("OpenCL platform #%d skipped: %s: %s", p_i, type(e).__name__, e)
    return out, None if out else "OpenCL platforms have no devices"


_broken_logged: set[str] = set()


def _broken_opencl(why: str) -> str:
    """Logged once per process: an install without a working OpenCL serves on the other devices."""
    if why not in _broken_logged:
        _broken_logged.add(why)
        _log.warning("%s; treating it as no OpenCL devices", why)
    return why


def _cl_type(cl, t: int) -> str:
    for flag, label in ((cl.device_type.ACCELERATOR, "ACCELERATOR"), (cl.device_type.GPU, "GPU"),
                        (cl.device_type.CPU, "CPU")):
        if t & flag:
            return label
    return "OTHER"


def inventory() -> dict:
    """Everything this machine offers: the `openscore devices` output and the HTTP inventory."""
    cuda, cuda_why = cuda_devices()
    ocl, ocl_why = opencl_devices()
    return {"devices": [d.to_dict() for d in [cpu_device(), *cuda, *ocl]],
            "notes": {k: v for k, v in (("cuda", cuda_why), ("opencl", ocl_why)) if v}}


# ---------------------------------------------------------------- explicit selection

def resolve_device(request: DeviceRequest | str) -> DeviceInfo:
    """Match an explicit device request against this machine; absent devices are a clear error."""
    req = parse_device(request) if isinstance(request, str) else request
    if req.kind == "cpu":
        return cpu_device()
    if req.kind == "auto":
        raise InvalidDeviceNameError("'auto' is resolved per model by accelerators.loader, not here")
    if req.kind == "cuda":
        devs, why = cuda_devices()
        idx = req.index or 0
        if idx >= len(devs):
            have = ", ".join(d.name for d in devs) or why
            raise DeviceNotFoundError(f"device {req} requested but not present (CUDA: {have})")
        return devs[idx]
    devs, why = opencl_devices()
    if req.kind == "fpga":
        accel = [d for d in devs if d.type == "ACCELERATOR"]
        idx = req.index or 0
        if idx >= len(accel):
            have = ", ".join(f"{d.name} ({d.type}, {d.description})" for d in devs) or why
            raise DeviceNotFoundError(
                f"device {req} requested but there is no OpenCL ACCELERATOR device #{idx}; OpenCL devices: {have}")
        return accel[idx]
    if req.platform_index is None:
        if not devs:
            raise DeviceNotFoundError(f"device opencl requested but none is present ({why})")
        return devs[0]
    for d in devs:
        if (d.platform_index, d.device_index) == (req.platform_index, req.device_index):
            return d
    have = ", ".join(f"{d.name} ({d.description})" for d in devs) or why
    raise DeviceNotFoundError(f"device {req} requested but not present; OpenCL devices: {have}")
