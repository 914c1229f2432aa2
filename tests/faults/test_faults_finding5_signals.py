"""Finding 5: ``kill`` must not lose the stop or the data.

A real ``karakuri deploy`` subprocess drives the virtual MCU through the fault proxy.
SIGTERM and SIGHUP stop it exactly as Ctrl-C does: the tick in progress completes, a final
HOLD at the measured pose goes out, the summary is printed, the MCAP is closed, exit code 0
(docs/control-loop.md, "Stop signals").  After SIGKILL the MCAP still opens with the standard
``mcap`` reader and holds everything up to less than 1 s before the kill.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fault_rig import (
    FAR,
    Rig,
    check_not_starved,
    exit_code,
    launch_file,
    policy_file,
    retrying,
    stopped_by,
)
from mcap.reader import make_reader

from karakuri.robot.link import CommandMode


def read_mcap(path):
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        msgs = [(c.topic, m.log_time, json.loads(m.data)) for _, c, m in reader.iter_messages()]
    return summary, msgs


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_in_a_final_hold_a_summary_and_a_closed_mcap(tmp_path, signum):
    policy = policy_file(tmp_path / "far.onnx", FAR)

    def once():
        with Rig() as rig:
            launch = launch_file(tmp_path, rig.port, policy, hold_s=30.0)
            with rig.running(launch) as proc:
                rig.wait_driving(0.5, proc)
                t_sig = time.monotonic()
                proc.send_signal(signum)
                out = proc.communicate(timeout=20)[0]
            check_not_starved(out)
            rig.assert_inside_envelope()
            return rig, proc.returncode, out, t_sig

    rig, rc, out, t_sig = retrying(once)
    name = signal.Signals(signum).name
    assert rc == exit_code("ok"), out
    assert stopped_by(out) == f"{'terminated' if name == 'SIGTERM' else 'hung up'} ({name})", out
    assert "ticks at 50 Hz" in out  # the summary
    # The final command is a HOLD at the measured pose (the arm was moving; it now holds).
    last, last_state = rig.last_command(), rig.states()[-1][2]
    assert last.mode == CommandMode.HOLD
    assert np.abs(last.q_target - last_state.q).max() < 0.1
    summary, msgs = read_mcap(tmp_path / "run.mcap")
    assert summary is not None and summary.statistics.message_count == len(msgs) > 50
    assert abs(max(t for _, t, _ in msgs) / 1e9 - t_sig) < 0.5  # written up to the stop


def test_after_sigkill_the_mcap_opens_and_holds_all_but_the_last_second(tmp_path):
    policy = policy_file(tmp_path / "far.onnx", FAR)

    def once():
        with Rig() as rig:
            launch = launch_file(tmp_path, rig.port, policy, hold_s=30.0)
            with rig.running(launch) as proc:
                rig.wait_driving(1.5, proc)
                t_kill = time.monotonic()
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            # The MCU's watchdog stops the arm nobody commands any more, inside its limits.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and np.abs(rig.states()[-1][2].dq).max() > 0.01:
                time.sleep(0.05)
            rig.assert_inside_envelope()
            return t_kill

    t_kill = retrying(once)
    _, msgs = read_mcap(tmp_path / "run.mcap")  # the standard reader, no recovery step
    assert len(msgs) > 50
    t_last = max(t for _, t, _ in msgs) / 1e9
    assert t_kill - t_last < 1.0, f"the MCAP ends {t_kill - t_last:.2f} s before the kill"
    assert {"/state", "/command", "/timing"} <= {t for t, _, _ in msgs}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_karakuri_sil_stops_cleanly_on_a_stop_signal(signum):
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-m", "karakuri.launch.cli", "sil"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)
    try:
        assert proc.stdout.readline().startswith("port: ")
        proc.send_signal(signum)
        out = proc.communicate(timeout=20)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped at t=" in out, out
