"""The device this replica was given (by the deployer / server), readable from an entry script's init().

The server sets OPENSCORE_DEVICE (e.g. `cuda:0`, `opencl:0:1`, `fpga`, `cpu`) before it runs init();
`load_model(path)` with no device uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .devices import parse_device

ENV = "OPENSCORE_DEVICE"


@dataclass(frozen=True)
class ReplicaDevice:
    name: str  # the device string, as given
    kind: str  # cpu | cuda | opencl | fpga | auto
    index: int | None = None  # CUDA ordinal or FPGA index
    platform_index: int | None = None  # OpenCL
    device_index: int | None = None  # OpenCL


def current_device() -> ReplicaDevice | None:
    """The replica's device from OPENSCORE_DEVICE, or None when the server assigned none."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    req = parse_device(text)
    index = req.index if req.index is not None else (0 if req.kind in ("cuda", "fpga") else None)
    return ReplicaDevice(text, req.kind, index, req.platform_index, req.device_index)


def set_current_device(name: str | None) -> None:
    """For the server: record the replica's device (validated) before running init()."""
    if name is None:
        os.environ.pop(ENV, None)
        return
    parse_device(name)
    os.environ[ENV] = name
