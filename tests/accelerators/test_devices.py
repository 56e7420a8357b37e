import json

import pytest

from openscore.accelerators import (
    DeviceNotFoundError,
    InvalidDeviceNameError,
    current_device,
    inventory,
    parse_device,
    resolve_device,
    set_current_device,
)
from openscore.accelerators.cli import add_devices_command
from openscore.accelerators.devices import DeviceRequest, cuda_devices
from openscore.cli import main


@pytest.mark.parametrize("text,want", [
    ("cpu", DeviceRequest("cpu")), ("auto", DeviceRequest("auto")), ("cuda", DeviceRequest("cuda")),
    ("cuda:3", DeviceRequest("cuda", 3)), ("opencl", DeviceRequest("opencl")),
    ("opencl:1:2", DeviceRequest("opencl", platform_index=1, device_index=2)), ("FPGA", DeviceRequest("fpga")),
    ("fpga:1", DeviceRequest("fpga", 1)),
])
def test_parse_device(text, want):
    assert parse_device(text) == want


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "opencl:1", "tpu:0", ""])
def test_parse_device_rejects_with_valid_forms(text):
    with pytest.raises(InvalidDeviceNameError, match="expected one of: cpu, cuda"):
        parse_device(text)


def test_inventory_has_cpu_and_reports_why_cuda_is_missing():
    inv = inventory()
    assert inv["devices"][0]["name"] == "cpu" and inv["devices"][0]["memory_bytes"] > 0
    if not cuda_devices()[0]:
        assert "cuda" in inv["notes"]
    json.dumps(inv)


def test_opencl_device_listed_with_type_and_memory(opencl_device):
    d = next(d for d in inventory()["devices"] if d["name"] == opencl_device.name)
    assert d["type"] in ("CPU", "GPU", "ACCELERATOR", "OTHER") and d["memory_bytes"] > 0 and d["platform"]
    assert resolve_device(opencl_device.name) == opencl_device


def test_absent_cuda_device_is_a_clear_error():
    n = len(cuda_devices()[0])
    with pytest.raises(DeviceNotFoundError, match=f"cuda:{n} requested but not present"):
        resolve_device(f"cuda:{n}")


def test_fpga_without_accelerator_names_what_exists():
    if any(d["type"] == "ACCELERATOR" for d in inventory()["devices"]):
        pytest.skip("this machine has an OpenCL ACCELERATOR device")
    with pytest.raises(DeviceNotFoundError, match="no OpenCL ACCELERATOR device"):
        resolve_device("fpga")


def test_absent_opencl_device_is_a_clear_error():
    with pytest.raises(DeviceNotFoundError, match="opencl:99:0 requested but not present"):
        resolve_device("opencl:99:0")


def test_replica_device_from_environment(monkeypatch):
    monkeypatch.delenv("OPENSCORE_DEVICE", raising=False)
    assert current_device() is None
    set_current_device("cuda:1")
    d = current_device()
    assert (d.kind, d.index, d.name) == ("cuda", 1, "cuda:1")
    set_current_device("opencl:0:2")
    d = current_device()
    assert (d.kind, d.platform_index, d.device_index) == ("opencl", 0, 2)
    with pytest.raises(InvalidDeviceNameError):
        set_current_device("gpu0")
    set_current_device(None)
    assert current_device() is None


def test_cli_devices_table_and_json(capsys):
    assert main(["devices"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("cpu")
    assert main(["devices", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"][0]["kind"] == "cpu"


def test_add_devices_command_registers_subcommand():
    import argparse
    p = argparse.ArgumentParser()
    add_devices_command(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["devices", "--json"])
    assert args.json and callable(args.func)
