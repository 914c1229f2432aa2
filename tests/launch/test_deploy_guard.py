"""Findings 3 and 4 over the real pty: frames the virtual MCU writes stop a SIL deploy.

A FAULT message while STATE still says ARMED stops it with the robot's exit code; a STATE
with the elbow at 50 rad or NaN stops it as a bad STATE, the final HOLD at a finite pose.
"""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("mujoco")

from test_deploy_sil import launch

from karakuri.firmware_bridge.protocol import Fault, FaultCode, State, encode_frame
from karakuri.launch import deploy as deploy_mod
from karakuri.launch import schema_links
from karakuri.launch.schema import load_launch
from karakuri.robot.link import StatusBits
from karakuri.robot.loop_stats import EXIT_CODES

ELBOW = 2


def deploy_injecting(tmp_path, monkeypatch, frame_for, attempts: int = 3):
    """:func:`deploy_once`, again while the machine was too loaded to inject (MCU stalled)."""
    for _ in range(attempts):
        summary, mcu, injected = deploy_once(tmp_path, monkeypatch, frame_for)
        if injected:
            return summary, mcu
    pytest.fail(f"the frames were never injected in {attempts} runs (machine overloaded?)")


def deploy_once(tmp_path, monkeypatch, frame_for):
    """Run a SIL deploy; 0.5 s after the MCU reports ARMED, write ``frame_for(mcu)`` to the host.

    Written five times, 10 ms apart: the loop reads the newest STATE once a tick, and a single
    forged STATE may be replaced by the MCU's next before it is read (never used, so harmless).
    """
    real = schema_links.virtual_mcu
    seen, injected = [], []

    def inject():
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if seen and seen[0].status & StatusBits.ARMED:
                time.sleep(0.5)
                try:
                    for _ in range(5):
                        seen[0].send_raw(frame_for(seen[0]))
                        time.sleep(0.01)
                except TimeoutError:
                    return  # the MCU thread was starved: not injected, run again
                injected.append(True)
                return
            time.sleep(0.01)

    def spy(*a, **kw):
        cm = real(*a, **kw)

        class Wrap:
            def __enter__(self):
                seen.append(cm.__enter__())
                seen[0].commands_at_exit = None
                return seen[0]

            def __exit__(self, *exc):
                seen[0].commands_at_exit = seen[0].command_log
                return cm.__exit__(*exc)

        return Wrap()

    monkeypatch.setattr(schema_links, "virtual_mcu", spy)
    injector = threading.Thread(target=inject, daemon=True)
    injector.start()
    cfg = load_launch(launch(tmp_path, command={"targets": [[0.5, 0.1, 0.3]], "hold_s": 6.0,
                                                "reset_s": 0.0}))
    summary = deploy_mod.deploy(cfg, log=lambda s: None).summary
    injector.join(5.0)
    monkeypatch.setattr(schema_links, "virtual_mcu", real)
    return summary, seen[0], bool(injected)


def test_fault_message_while_armed_stops_with_the_robot_exit_code(tmp_path, monkeypatch):
    s, _ = deploy_injecting(tmp_path, monkeypatch, lambda mcu: encode_frame(
        Fault(FaultCode.BAD_COMMAND, 0x7FFF, 0), 0x7FFF, int(mcu.sim_time * 1e6)))
    assert s.fault.startswith("robot FAULT") and "BAD_COMMAND" in s.fault, s.format()
    assert s.exit_code == EXIT_CODES["robot"] and s.duration_s < 5.0


@pytest.mark.parametrize("bad", [50.0, float("nan")])
def test_bad_state_stops_with_the_state_exit_code_holding_finite(tmp_path, monkeypatch, bad):
    def forge(mcu):
        # From now on every STATE the MCU encodes reports the elbow at ``bad`` (a stuck or
        # broken sensor): one forged frame written beside them is overwritten at once.
        encode = mcu.core._encode
        if getattr(encode, "forged", False):
            return b""

        def forged(msg, t):
            if isinstance(msg, State):
                q = np.array(msg.q, np.float32)
                q[ELBOW] = bad
                msg = State(msg.status, msg.last_cmd_seq, q, msg.dq, msg.effort)
            return encode(msg, t)

        forged.forged = True
        mcu.core._encode = forged
        return b""

    s, mcu = deploy_injecting(tmp_path, monkeypatch, forge)
    assert s.fault.startswith("bad STATE") and "'elbow'" in s.fault, s.format()
    assert s.exit_code == EXIT_CODES["state"] and s.duration_s < 5.0
    _, _, q_last = mcu.commands_at_exit[-1]
    assert np.all(np.isfinite(q_last)) and abs(q_last[ELBOW]) < 2.8
