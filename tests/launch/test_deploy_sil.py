"""Sim-in-the-loop over a real pty: launch file -> OnnxPolicy -> loop -> SerialLink -> VirtualMCU.

The policy files are built by hand with ``onnx`` (no torch export, so these run in seconds):
"hold" commands the default pose; "nan" outputs NaN from the first tick.
"""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from launch_files import write_launch  # noqa: E402
from trust_helpers import hold_policy  # noqa: E402

from karakuri.launch import deploy as deploy_mod  # noqa: E402
from karakuri.launch import schema_links  # noqa: E402
from karakuri.launch.schema import load_launch  # noqa: E402
from karakuri.robot.link import CommandMode  # noqa: E402

TOOL_AT_HOME = np.array([0.492, 0.134, 0.3575])  # industrial_arm's tool at its default pose, m
TOOL_AWAY = TOOL_AT_HOME + np.array([0.1, 0.0, 0.0])


def launch(tmp_path: Path, poison: bool = False, **kw) -> Path:
    hold_policy(tmp_path / "policy.onnx", gain=float("nan") if poison else 0.0)
    return write_launch(tmp_path / "launch.yaml", policy="policy.onnx",
                        link={"kind": "sil", "record_commands": True},
                        targets=[TOOL_AT_HOME, TOOL_AWAY], hold_s=0.6, reset_s=0.2,
                        **{"soft_start_s": 0.2, "telemetry": "sil.mcap", **kw})


@pytest.fixture
def mcu_spy(monkeypatch):
    """Keep a handle on the VirtualMCU that deploy starts."""
    seen = []
    real = schema_links.virtual_mcu

    def spy(*a, **kw):
        cm = real(*a, **kw)

        class Wrap:
            def __enter__(self):
                mcu = cm.__enter__()
                seen.append(mcu)
                return mcu

            def __exit__(self, *exc):
                mcu = seen[-1]
                mcu.final_state = mcu.joint_state()
                return cm.__exit__(*exc)

        return Wrap()

    monkeypatch.setattr(schema_links, "virtual_mcu", spy)
    return seen


def test_sil_deploy_over_pty_judges_success(tmp_path, mcu_spy):
    result = deploy_mod.deploy(load_launch(launch(tmp_path)), log=lambda s: None)
    s = result.summary
    assert s.fault is None and s.stopped_by == "all 2 episodes done"
    assert [e.success for e in s.episodes] == [True, False]
    assert s.link["frames_rx"] > 0 and s.link["crc_errors"] == 0
    mcu = mcu_spy[0]
    assert mcu.applied_commands > 0.9 * s.ticks
    assert result.telemetry.stat().st_size > 0


def test_sil_ctrl_c_leaves_the_arm_holding(tmp_path, mcu_spy, monkeypatch):
    from karakuri.firmware_bridge.serial_link import SerialLink

    modes = []
    real_send = SerialLink.send_command

    def spy_send(self, q, mode=CommandMode.POSITION):
        modes.append(CommandMode(mode))
        return real_send(self, q, mode)

    monkeypatch.setattr(SerialLink, "send_command", spy_send)

    def interrupt():
        # Ctrl-C once the loop is driving the arm (a fixed delay raced a slow start-up)
        deadline = time.monotonic() + 30.0
        while CommandMode.POSITION not in modes and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    result = deploy_mod.deploy(load_launch(launch(tmp_path, command={
        "targets": [TOOL_AWAY.tolist()], "hold_s": 30.0, "reset_s": 0.0})), log=lambda s: None)
    assert result.summary.stopped_by == "interrupted (Ctrl-C)" and result.summary.fault is None
    first = modes.index(CommandMode.POSITION)  # HOLD until the MCU reports ARMED
    assert modes[-1] == CommandMode.HOLD and CommandMode.HOLD not in modes[first:-1]
    _, dq_end, _ = mcu_spy[0].final_state
    assert np.all(np.abs(dq_end) < 0.05)  # not moving when the loop has gone


def test_sil_nonfinite_policy_holds_and_faults(tmp_path, mcu_spy):
    result = deploy_mod.deploy(load_launch(launch(tmp_path, poison=True)), log=lambda s: None)
    s = result.summary
    # the policy first runs after arming (a few ticks) and the 0.2 s reset phase (10 ticks);
    # its first output stops the loop
    reset_ticks = 0.2 * 50
    assert "non-finite" in s.fault and s.ticks <= reset_ticks + 8
    assert s.interventions["nonfinite"] == 1
    log = mcu_spy[0].command_log
    assert len(log) >= reset_ticks and all(np.all(np.isfinite(q)) for _, _, q in log)
