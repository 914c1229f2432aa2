"""``karakuri sil`` as a process, and a tiny ``karakuri bench link``."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

from fb_helpers import drive

from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig
from karakuri.launch.cli import main
from karakuri.robot.link import StatusBits
from karakuri.robot.registry import load_robot


def test_sil_process_serves_a_serial_link_and_stops_cleanly_on_sigterm(tmp_path):
    link_path = tmp_path / "tty"
    cmd = [sys.executable, "-m", "karakuri.launch.cli", "sil", "--robot", "industrial_arm",
           "--link-path", str(link_path), "--state-rate-hz", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"port: {link_path}"
        spec = load_robot("industrial_arm")
        with SerialLink(spec, SerialLinkConfig(port=str(link_path), state_rate_hz=200)) as link:
            assert link.caps.state_period_us == 4000  # 200 Hz = 5 ms, down to the 2 ms grid
            q = spec.default_pose + np.array([0.2, 0, 0, 0, 0, 0, 0])
            drive(link, lambda t: q, 0.5)
            assert link.latest_state().status == StatusBits.ARMED
            assert abs(link.latest_state().position[0] - q[0]) < 0.02
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped at t=" in out and "commands_applied" in out
    assert not link_path.exists()


def test_sil_names_an_unknown_robot(capsys):
    assert main(["sil", "--robot", "no_such_robot", "--duration-s", "0.1"]) == 2
    assert "unknown robot 'no_such_robot'" in capsys.readouterr().err


def test_sil_flags_come_from_the_config_dataclasses(capsys):
    with pytest.raises(SystemExit):
        main(["sil", "--help"])
    text = capsys.readouterr().out
    for flag in ("--link-path", "--state-rate-hz", "--corrupt-byte-rate", "--drop-frame-rate",
                 "--delay-frame-rate", "--fault-seed", "--fault-direction"):
        assert flag in text


@pytest.mark.slow
def test_bench_link_prints_the_baseline_and_ratios(capsys):
    assert main(["bench", "link", "--seconds", "0.3", "--pings", "20", "--rate-hz", "200"]) == 0
    out = capsys.readouterr().out
    assert "baseline: raw pty echo" in out and "COMMAND -> STATE" in out
    assert "x" in out.split("COMMAND -> STATE")[1].splitlines()[0]  # the ratio column
