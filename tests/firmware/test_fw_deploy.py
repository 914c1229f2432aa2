"""``karakuri deploy`` of the trained reach policy on the firmware under QEMU (link kind qemu).

The loop, safety filter and SerialLink are the production ones; the firmware's simulated
servo moves the joints, and each episode is judged from the measured joints through the
arm's forward kinematics (the reach task's 2 cm radius).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from fw_qemu_helpers import Timing, on_time

from karakuri.firmware_bridge.firmware.qemu import parse_stats
from karakuri.launch.deploy import deploy
from karakuri.launch.schema import parse_launch

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "reach_fw.yaml"


def test_reach_policy_runs_on_the_firmware_under_qemu(reach_policy: Path, firmware_elf: Path,
                                                        tmp_path: Path) -> None:
    def attempt(timing: Timing) -> None:
        data = yaml.safe_load(LAUNCH.read_text())
        console = tmp_path / "console.log"
        data["policy"] = str(reach_policy)
        data["link"].update(firmware=str(firmware_elf), console=str(console))
        data["telemetry"] = str(tmp_path / "fw.mcap")
        data["command"]["box"]["count"] = 4
        data["command"]["reset_s"] = 1.0
        cfg = parse_launch(data, tmp_path / "reach_fw.yaml")
        summary = deploy(cfg, log=lambda line: None).summary
        history = parse_stats(console.read_text())
        timing.host_late_s = summary.period_error.max_us * 1e-6
        timing.board_step_ms = max((s["window_step_ms"] for s in history[2:]), default=0)
        assert summary.fault is None, summary.format()
        assert len(summary.episodes) == 4, summary.format()
        assert summary.success_rate is not None and summary.success_rate >= 0.75, \
            summary.format()
        fw = history[-1]
        assert fw["watchdog_trips"] == 0 and fw["commands_applied"] > 200, fw
        assert fw["crc_errors"] == fw["length_errors"] == fw["other_errors"] == 0, fw

    on_time(attempt)
