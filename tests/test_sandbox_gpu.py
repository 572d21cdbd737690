"""GPU trials in the sandbox: the device nodes of the GPUs a trial was given are bound in, and the
address-space limit (which CUDA's reservations exceed) is lifted for them. No GPU here: the node selection
runs on a fake /dev, the binding on a real device node of this machine; bench/gpu.sh checks CUDA itself."""

import asyncio
import os
from pathlib import Path

import pytest

from ratchet.research.command import trial_limits
from ratchet.sandbox import Sandbox, SandboxLimits, bwrap_argv, bwrap_works, gpu_device_nodes, python_argv


def fake_dev(tmp_path: Path, *names: str) -> Path:
    for n in names:
        (tmp_path / n).touch()
    return tmp_path


def test_the_visible_gpus_nodes_and_the_control_nodes(tmp_path):
    dev = fake_dev(tmp_path, "nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1", "nvidia10")
    assert gpu_device_nodes("1", dev) == tuple(str(dev / n) for n in ("nvidiactl", "nvidia-uvm", "nvidia1"))
    assert gpu_device_nodes("0,10", dev)[-2:] == (str(dev / "nvidia0"), str(dev / "nvidia10"))
    assert len(gpu_device_nodes("GPU-8f2c1a", dev)) == 5  # UUIDs: every GPU node (the driver maps them)
    assert gpu_device_nodes(None, dev) == gpu_device_nodes("", dev) == gpu_device_nodes("-1", dev) == ()
    no_driver = tmp_path / "no-driver"
    no_driver.mkdir()
    assert gpu_device_nodes("0", fake_dev(no_driver, "nvidia0")) == ()  # no nvidiactl: no driver, nothing bound


def test_bwrap_binds_the_devices_and_sys(tmp_path):
    cmd = bwrap_argv(["python3"], tmp_path, (), {}, 16, None, devices=("/dev/nvidiactl", "/dev/nvidia0"))
    assert cmd[cmd.index("/dev/nvidia0") - 1] == "--dev-bind" and "--dev-bind" in cmd
    assert cmd[cmd.index("/sys") - 1] == "--ro-bind"
    assert "--dev-bind" not in bwrap_argv(["python3"], tmp_path, (), {}, 16, None)


def test_a_trial_with_gpus_gets_their_nodes(monkeypatch):
    from ratchet.config import ResearchSection

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert trial_limits(ResearchSection(command="python train.py")).gpu_devices == ()


PROBE = ("import os, resource\n"
         "print(os.path.exists('/dev/loop-control'), resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY)\n")


@pytest.mark.skipif(not bwrap_works() or not os.path.exists("/dev/loop-control"), reason="needs bwrap and /dev/loop-control")
def test_a_bound_device_is_there_and_the_address_space_is_free():
    def run(limits):
        return asyncio.run(Sandbox(limits, "bwrap").run(python_argv("p.py"), files={"p.py": PROBE})).stdout.split()

    assert run(SandboxLimits(wall_s=20)) == ["False", "False"]
    assert run(SandboxLimits(wall_s=20, gpu_devices=("/dev/loop-control",))) == ["True", "True"]
