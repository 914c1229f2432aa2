"""``karakuri bench link``: COMMAND → STATE round trip over a pty, next to a raw pty echo.

Three measurements in one run, each with its peer in a separate process:

- *baseline*: the raw pty byte echo: write one COMMAND-sized frame, read the same bytes back
  from a process that echoes them (no codec, no MCU loop): the floor a pty allows here;
- *HEARTBEAT → ACK*: ``SerialLink.ping`` against ``karakuri sil``: the codec both ways, the
  link's reader thread and the virtual MCU's input handling;
- *COMMAND → STATE*: commands at ``rate_hz`` through ``SerialLink.send_command``; each is
  timed until the first STATE whose ``last_cmd_seq`` says it was applied.  This includes
  waiting for the MCU's next servo step and STATE (both every 2 ms at 500 Hz), as a real
  firmware's would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import serial

from karakuri.firmware_bridge.protocol import Command, encode_frame
from karakuri.firmware_bridge.serial_link import SerialLink, SerialLinkConfig
from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.robot.link import CommandMode, StatusBits

_ECHO = """
import os, sys
fd = int(sys.argv[1])
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    os.write(fd, data)
"""


@dataclass(frozen=True)
class BenchLinkConfig:
    """Settings of ``karakuri bench link``.

    Attributes:
        robot: Registered robot name or sidecar .yaml.
        rate_hz: COMMAND rate and STATE rate, Hz.
        seconds: How long the COMMAND → STATE and the echo measurements each run, s.
        pings: How many HEARTBEAT → ACK round trips to time.
    """

    robot: str = "industrial_arm"
    rate_hz: float = 500.0
    seconds: float = 5.0
    pings: int = 500

    def __post_init__(self) -> None:
        if not (self.rate_hz > 0 and self.seconds > 0 and self.pings > 0):
            raise ValueError(f"rate_hz, seconds and pings must be > 0; got {self}")


def register(kinds: argparse._SubParsersAction) -> None:
    """Add ``bench link``."""
    p = kinds.add_parser("link", help="COMMAND -> STATE round trip over a pty vs a raw pty echo")
    add_dataclass_args(p, BenchLinkConfig)
    p.set_defaults(func=run)


def _paced(rate_hz: float, seconds: float) -> Iterator[int]:
    """Yield tick indices on absolute deadlines: sleep until 0.3 ms before, then spin."""
    t0, period = time.monotonic(), 1.0 / rate_hz
    for k in range(round(seconds * rate_hz)):
        deadline = t0 + k * period
        time.sleep(max(0.0, deadline - time.monotonic() - 3e-4))
        while time.monotonic() < deadline:
            pass
        yield k


def echo_round_trips(frame: bytes, rate_hz: float, seconds: float) -> np.ndarray:
    """Raw pty echo round trips of ``frame``, s, paced at ``rate_hz``. Shape: (k,)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    child = subprocess.Popen([sys.executable, "-c", _ECHO, str(master)], pass_fds=(master,))
    os.close(master)
    out = []
    try:
        with serial.Serial(path, timeout=0.5) as port:
            os.close(slave)
            for _ in _paced(rate_hz, seconds):
                t = time.perf_counter()
                port.write(frame)
                got = port.read(len(frame))
                out.append(time.perf_counter() - t)
                if got != frame:
                    raise RuntimeError(f"echo returned {len(got)} of {len(frame)} bytes")
    finally:
        child.kill()
        child.wait()
    return np.array(out)


def _start_sil(robot: str, rate_hz: float, link_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "karakuri.launch.cli", "sil", "--robot", robot,
           "--link-path", str(link_path), "--state-rate-hz", str(rate_hz)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("port: "):
        proc.kill()
        raise RuntimeError(f"karakuri sil did not start: {line!r}")
    return proc


def sil_round_trips(cfg: BenchLinkConfig) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(COMMAND → STATE, HEARTBEAT → ACK) round trips, s, and the link counters."""
    from karakuri.robot.registry import load_robot

    spec = load_robot(cfg.robot)
    with tempfile.TemporaryDirectory() as tmp:
        link_path = Path(tmp) / "tty"
        proc = _start_sil(cfg.robot, cfg.rate_hz, link_path)
        try:
            link_cfg = SerialLinkConfig(port=str(link_path), command_rate_hz=cfg.rate_hz,
                                        state_rate_hz=cfg.rate_hz, resend_period_s=0.0)
            with SerialLink(spec, link_cfg) as link:
                pings = np.array([link.ping() for _ in range(cfg.pings)])
                q0, rearmed = spec.default_pose.copy(), 0.0
                for k in _paced(cfg.rate_hz, cfg.seconds):
                    q = q0.copy()
                    q[0] += 0.05 * np.sin(2 * np.pi * 0.5 * k / cfg.rate_hz)
                    link.send_command(q, CommandMode.POSITION)
                    state = link.latest_state()
                    if state is not None and state.status & StatusBits.FAULT and (
                            time.monotonic() - rearmed > 0.05):
                        link.rearm()  # the host was late by > 3 periods; count it, go on
                        rearmed = time.monotonic()
                time.sleep(0.05)
                rtt, counters = link.round_trip_times(), link.counters().as_dict()
                counters["watchdog_trips"] = sum("WATCHDOG" in f for f in link.faults())
        finally:
            proc.terminate()
            proc.wait(timeout=5)
    return rtt, pings, counters


def _row(name: str, x: np.ndarray, base: np.ndarray | None) -> str:
    p50, p99, mx = (np.percentile(x, q) * 1e6 for q in (50, 99, 100))
    ratio = ""
    if base is not None:
        ratio = (f"{p50 / (np.percentile(base, 50) * 1e6):7.1f}x "
                 f"{p99 / (np.percentile(base, 99) * 1e6):7.1f}x")
    return f"  {name:<34}{x.size:>7}{p50:>10.0f}{p99:>10.0f}{mx:>10.0f}  {ratio}"


def run(args: argparse.Namespace) -> int:
    """Print the three round trips and their ratios to the raw echo."""
    cfg = dataclass_from_args(BenchLinkConfig, args)
    from karakuri.robot.registry import load_robot

    n = load_robot(cfg.robot).n_joints
    frame = encode_frame(Command(CommandMode.POSITION, np.zeros(n, np.float32)), 1, 0)
    print(f"karakuri bench link: {cfg.robot} ({n} joints, COMMAND frame {len(frame)} B), "
          f"{cfg.rate_hz:g} Hz for {cfg.seconds:g} s over a pty; peers in their own processes")
    base = echo_round_trips(frame, cfg.rate_hz, cfg.seconds)
    rtt, pings, counters = sil_round_trips(cfg)
    print(f"  {'round trip':<34}{'n':>7}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}"
          f"  {'p50, p99 vs baseline'}")
    print(_row("baseline: raw pty echo", base, None))
    print(_row("HEARTBEAT -> ACK (virtual MCU)", pings, base))
    print(_row("COMMAND -> STATE (virtual MCU)", rtt, base))
    sent = round(cfg.rate_hz * cfg.seconds)
    trips = counters.pop("watchdog_trips")
    print(f"  commands sent {sent}, round trips seen {rtt.size} (a STATE reports only the newest "
          f"applied COMMAND); MCU watchdog trips {trips} (the host late by > 3 periods: re-armed)")
    print(f"  link counters: {counters}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    return 0
