"""Run the reference firmware on an emulated Cortex-M (QEMU ``mps2-an386``) behind a pty.

``qemu-system-arm -serial pty`` puts the firmware's UART0 (the wire protocol) on a host
pseudo-terminal, which :class:`~karakuri.firmware_bridge.serial_link.SerialLink` opens exactly
as it opens a USB serial port; UART1 carries the firmware's ``KKSTAT`` console lines (its
counters and servo-loop timing) into a file.  With ``faults`` set, a
:class:`~karakuri.firmware_bridge.fault_proxy.FaultProxy` sits between the two and corrupts,
drops or delays frames as the virtual MCU's link does (the same fault channel).

Standard library and numpy only (no MuJoCo): this is the
``link: {kind: qemu}`` of a launch file (docs/firmware.md).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from karakuri.firmware_bridge.fault_channel import FaultConfig
from karakuri.firmware_bridge.fault_proxy import FaultProxy
from karakuri.robot.link import LinkError

FIRMWARE_DIR = Path(__file__).resolve().parent
DEFAULT_ELF = FIRMWARE_DIR / "build" / "qemu" / "karakuri_fw.elf"
_PTY_LINE = re.compile(rb"char device redirected to (\S+) \(label serial0\)")


class QemuError(LinkError):
    """QEMU or the firmware image is missing, or the board did not come up; says the fix."""


@dataclass(frozen=True)
class QemuLinkConfig:
    """``link:`` with ``kind: qemu``: the reference firmware on an emulated Cortex-M4F.

    Attributes:
        firmware: The firmware ELF (``make -C firmware_bridge/firmware qemu`` builds it).
        machine: QEMU machine; the port is written for ``mps2-an386``.
        qemu: The QEMU executable.
        console: File for the firmware's ``KKSTAT`` console (UART1); None: a temp file.
        icount: Run QEMU with ``-icount shift=N,sleep=on`` (deterministic instruction timing
            for measurements); None: the guest clock follows the host's.
        faults: Link faults injected between the host and the board (a pty proxy).
        handshake_timeout_s: How long the host waits for CAPS, the ARM ACK and a STATE, s.
        boot_timeout_s: How long QEMU may take to open its pty, s.
    """

    firmware: Path = DEFAULT_ELF
    machine: str = "mps2-an386"
    qemu: str = "qemu-system-arm"
    console: Path | None = None
    icount: int | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    handshake_timeout_s: float = 5.0
    boot_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.icount is not None and not 0 <= self.icount <= 10:
            raise ValueError(f"icount: {self.icount} must be a shift in 0..10 (or absent)")
        if not self.handshake_timeout_s > 0 or not self.boot_timeout_s > 0:
            raise ValueError("handshake_timeout_s and boot_timeout_s must be > 0 s")


def parse_stats(text: str) -> list[dict[str, int]]:
    """Every complete ``KKSTAT key=value ...`` line of a console log, oldest first."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("KKSTAT ") and line.endswith("\n"):
            pairs = (kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
            out.append({k: int(v) for k, v in pairs if v.isdigit()})
    return out


class QemuBoard:
    """The firmware running under QEMU; a context manager.

    Args:
        config: What to run and how.

    Attributes:
        port: The pty the host opens (the proxy's when faults are set).
    """

    def __init__(self, config: QemuLinkConfig) -> None:
        self.config = config
        self.port = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._proxy: FaultProxy | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.console_path = Path(config.console) if config.console else Path()
        if config.console:
            self.console_path.parent.mkdir(parents=True, exist_ok=True)

    def start(self) -> str:
        """Start QEMU and wait for its pty; returns :attr:`port`.

        Raises:
            QemuError: QEMU or the ELF is missing, or no pty within ``boot_timeout_s``.
        """
        cfg = self.config
        exe = shutil.which(cfg.qemu)
        if exe is None:
            raise QemuError(f"link.qemu: {cfg.qemu!r} not found; install it (Debian: apt-get "
                            f"install qemu-system-arm)")
        if not Path(cfg.firmware).is_file():
            raise QemuError(f"link.firmware: {cfg.firmware} does not exist; build it with "
                            f"'make -C {FIRMWARE_DIR} qemu' (needs gcc-arm-none-eabi)")
        if not cfg.console:
            self._tmp = tempfile.TemporaryDirectory(prefix="karakuri-qemu-")
            self.console_path = Path(self._tmp.name) / "console.log"
        cmd = [exe, "-M", cfg.machine, "-nographic", "-monitor", "none", "-serial", "pty",
               "-serial", f"file:{self.console_path}", "-kernel", str(cfg.firmware)]
        if cfg.icount is not None:
            cmd[1:1] = ["-icount", f"shift={cfg.icount},sleep=on"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        qemu_port = self._wait_pty(cmd)
        self._wait_steady()
        if cfg.faults.active:
            faults = cfg.faults
            self._proxy = FaultProxy(qemu_port, faults.direction("to_mcu"),
                                     faults.direction("to_host"), seed=faults.fault_seed)
            self.port = self._proxy.start()
        else:
            self.port = qemu_port
        return self.port

    def _wait_pty(self, cmd: list[str]) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        out, deadline = b"", time.monotonic() + self.config.boot_timeout_s
        fd = self._proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            chunk = os.read(fd, 4096) if ready else b""
            out += chunk
            m = _PTY_LINE.search(out)
            if m:
                return m.group(1).decode()
            if ready and not chunk:
                break
        self.close()
        raise QemuError(f"QEMU did not open its pty within {self.config.boot_timeout_s} s "
                        f"({' '.join(cmd)}): {out.decode(errors='replace').strip()[-300:]}")

    def _wait_steady(self) -> None:
        """Wait for the self-test and the first console line of the servo loop after it.

        QEMU translates code on first use; the firmware's power-on self-test runs every path
        of a session once, and a host that connects after it does not meet a board still
        translating (which looks like a stalled MCU to the watchdog).  Gives up quietly
        after ``boot_timeout_s``; a failed self-test is an error.
        """
        deadline = time.monotonic() + self.config.boot_timeout_s
        while time.monotonic() < deadline:
            try:
                text = self.console_path.read_text(errors="replace")
            except OSError:
                text = ""
            if "KKERROR" in text:
                line = next(x for x in text.splitlines() if "KKERROR" in x)
                self.close()
                raise QemuError(f"firmware {self.config.firmware} failed at boot: {line}")
            if "selftest ok" in text and parse_stats(text):
                return
            time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        """The firmware's newest ``KKSTAT`` counters (every 250 ms; {} before the first)."""
        history = self.stats_history()
        return history[-1] if history else {}

    def stats_history(self) -> list[dict[str, int]]:
        """Every ``KKSTAT`` line so far, oldest first (``t_ms`` is the board's clock, ms)."""
        try:
            return parse_stats(self.console_path.read_text(errors="replace"))
        except OSError:
            return []

    @property
    def proxy(self) -> FaultProxy | None:
        """The fault proxy between host and board, when faults are set."""
        return self._proxy

    def close(self) -> None:
        """Stop the proxy and QEMU; safe to call twice."""
        if self._proxy is not None:
            self._proxy.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> QemuBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class MeasuredToolPlant:
    """A plant seen through the link: the tool position from the measured joint positions.

    Lets a deploy judge reach episodes on a board whose joints the host cannot see except
    through STATE (the emulated board's simulated servo).

    Args:
        link: The connected link (its newest STATE is used).
        fk: Tool-site forward kinematics: joint positions (rad or m) → xyz, m, base frame.
    """

    def __init__(self, link: Any, fk: Callable[[np.ndarray], np.ndarray]) -> None:
        self.link, self.fk = link, fk

    def tool_position(self) -> np.ndarray:
        """Tool centre point from the newest measured state, m, base frame. Shape: (3,)."""
        state = self.link.latest_state()
        if state is None:
            return np.full(3, np.nan)
        return np.asarray(self.fk(np.asarray(state.position, np.float64)), np.float64)
