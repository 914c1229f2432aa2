"""The qemu link's user errors: clear one-line messages before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from karakuri.firmware_bridge.firmware.qemu import (
    QemuBoard,
    QemuError,
    QemuLinkConfig,
    parse_stats,
)
from karakuri.launch.schema import LaunchError, load_launch

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "reach_fw.yaml"


def test_missing_firmware_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(QemuError, match=r"link.firmware: .*nope.elf does not exist; build it "
                                        r"with 'make -C .*firmware qemu'"):
        QemuBoard(QemuLinkConfig(firmware=tmp_path / "nope.elf", qemu="sh")).start()


def test_missing_qemu_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(QemuError, match=r"'no-such-qemu' not found; install it .*qemu-system-arm"):
        QemuBoard(QemuLinkConfig(firmware=tmp_path, qemu="no-such-qemu")).start()


def test_launch_file_keys_are_checked(tmp_path: Path) -> None:
    data = yaml.safe_load(LAUNCH.read_text())
    data["link"]["icount"] = 42
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LaunchError, match=r"link: icount: 42 must be a shift in 0..10"):
        load_launch(bad)
    data["link"] = {"kind": "qemu", "baud": 3}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LaunchError, match=r"link\.baud: unknown key 'baud'"):
        load_launch(bad)


def test_shipped_launch_file_loads_with_paths_beside_it() -> None:
    cfg = load_launch(LAUNCH)
    assert cfg.link_kind == "qemu"
    assert cfg.link.firmware == (LAUNCH.parent.parent / "firmware_bridge" / "firmware" / "build"
                                 / "qemu" / "karakuri_fw.elf").resolve()
    assert cfg.link.console is not None and cfg.link.console.name == "fw_console.log"


def test_console_lines_parse_and_a_partial_line_is_ignored() -> None:
    text = "KKBOOT x\nKKSTAT t_ms=250 crc_errors=2 mode=1\nKKSTAT t_ms=500 crc_err"
    assert parse_stats(text) == [{"t_ms": 250, "crc_errors": 2, "mode": 1}]
