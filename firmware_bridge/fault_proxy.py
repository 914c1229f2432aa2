"""A byte-level fault proxy between a host and an MCU's serial port.

The proxy opens a new pty for the host (``proxy.port``) and relays bytes to and from the
MCU's port (the pty ``karakuri sil`` prints, or a real device).  Each direction has its own
seeded faults, applied to whole frames (a frame ends at 0x00, as on the wire; see
:mod:`.fault_channel`):

- ``corrupt_byte_rate``: each byte XORed with a random non-zero value with this probability
  (it may become 0x00 and split the frame, as line noise does);
- ``drop_frame_rate``: whole frames lost;
- ``latency_s``: every frame delivered this long after it arrived (one-way latency; order
  is kept, a serial line never reorders); ``delay_frame_rate``/``delay_s``: some frames
  (and those behind them) held back longer;
- a cut: frames arriving inside a window are lost (``cut_at_s``/``cut_s`` from the proxy's
  start, or :meth:`FaultProxy.cut` from now);
- a rewrite: a function that sees each decoded frame and may return another message, sent
  with the same seq and time_us (a stuck or NaN joint in STATE);
- injection: raw bytes or a message put on the line between two frames
  (:meth:`FaultProxy.inject`: a foreign HELLO, a forged FAULT).

The proxy decodes the clean stream in both directions before any fault, so a test sees what
the MCU really measured (:meth:`FaultProxy.frames`).  Counters say what each fault did.
Runs in a thread (``with FaultProxy(mcu_port) as proxy:``) or in the foreground
(``karakuri proxy``).  Imports numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import math
import os
import select
import struct
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from karakuri.firmware_bridge.fault_channel import (
    DIRECTIONS,
    ChannelCounters,
    Direction,
    DirectionFaults,
    FaultChannel,
    Rewrite,
)
from karakuri.firmware_bridge.protocol import Frame, Message, encode_frame

__all__ = ["DIRECTIONS", "ChannelCounters", "Direction", "DirectionFaults", "FaultChannel",
           "FaultProxy", "Rewrite"]


@dataclass
class _Side:
    fd: int = -1
    pending: bytearray = field(default_factory=bytearray)


class FaultProxy:
    """Relay between a new host-side pty and the MCU's port, with faults per direction.

    Args:
        mcu_port: The MCU's serial port (a pty path or a device).
        to_mcu: Faults on the host -> MCU direction.
        to_host: Faults on the MCU -> host direction.
        seed: Seed of the fault generators (each direction its own stream).
        link_path: Keep a symlink to the host-side pty here; empty for none.
        max_pending: Bytes kept for a receiver that is not reading; beyond it they are
            dropped and counted as ``overflow_bytes``.

    Example::

        with VirtualMCU(spec) as mcu, FaultProxy(mcu.port) as proxy:
            link = SerialLink(spec, SerialLinkConfig(port=proxy.port))
            proxy.cut(0.12)
    """

    def __init__(self, mcu_port: str, to_mcu: DirectionFaults | None = None,
                 to_host: DirectionFaults | None = None, seed: int = 0, link_path: str = "",
                 max_pending: int = 1 << 16) -> None:
        self.mcu_port, self.link_path, self.seed = mcu_port, link_path, seed
        self.max_pending = max_pending
        self._faults = {"to_mcu": to_mcu or DirectionFaults(),
                        "to_host": to_host or DirectionFaults()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host, self._mcu = _Side(), _Side()
        self._host_slave = -1
        self.port = ""
        self.t0 = time.monotonic()
        self.mcu_reopens = 0
        self.channels: dict[Direction, FaultChannel] = {}
        self.max_pass_s = 0.0  # longest time between two relay passes (this process stalled)
        self.max_device_backlog = 0  # most bytes ever waiting for the MCU to take them

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> str:
        """Open the MCU's port and create the host-side pty; returns the host's port path."""
        self._open_mcu()
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._host.fd, self._host_slave = master, slave
        self.port = os.ttyname(slave)
        if self.link_path:
            tmp = f"{self.link_path}.tmp{os.getpid()}"
            os.symlink(self.port, tmp)
            os.replace(tmp, self.link_path)
            self.port = self.link_path
        self.t0 = time.monotonic()
        self.channels = {d: FaultChannel(self._faults[d], np.random.default_rng([self.seed, i]),
                                         self.t0) for i, d in enumerate(DIRECTIONS)}
        return self.port

    def start(self) -> str:
        """Open and relay in a daemon thread; returns the host's port path."""
        port = self.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="fault-proxy", daemon=True)
        self._thread.start()
        return port

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the thread and close both ports; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None
        for fd in (self._host.fd, self._host_slave, self._mcu.fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._host.fd = self._host_slave = self._mcu.fd = -1
        if self.link_path and Path(self.link_path).is_symlink():
            Path(self.link_path).unlink()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, duration_s: float | None = None) -> None:
        """Relay in this thread until :meth:`request_stop` or ``duration_s`` (s)."""
        if self._host.fd < 0:
            self.open()
        end = math.inf if duration_s is None else time.monotonic() + duration_s
        next_reopen = last = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < end:
            now = time.monotonic()
            self.max_pass_s, last = max(self.max_pass_s, now - last), now
            if self._mcu.fd < 0 and now >= next_reopen:
                with contextlib.suppress(OSError):
                    self._open_mcu()
                    self.mcu_reopens += 1
                next_reopen = now + 0.2
            with self._lock:
                due = min(ch.next_due() for ch in self.channels.values())
            fds = [fd for fd in (self._host.fd, self._mcu.fd) if fd >= 0]
            wait = min(0.002, max(0.0, due - now))
            if fds:
                ready = select.select(fds, [], [], wait)[0]
            else:
                ready = []
                time.sleep(wait)
            now = time.monotonic()
            with self._lock:
                for fd in ready:
                    side = "to_mcu" if fd == self._host.fd else "to_host"
                    data = self._read(fd)
                    if data:
                        self.channels[side].push(data, now)
                self._move(now)

    # ------------------------------------------------------------------ faults, scripted
    def cut(self, duration_s: float, direction: Direction | Literal["both"] = "both") -> None:
        """Lose every frame for ``duration_s`` from now, in one direction or both."""
        now = time.monotonic()
        with self._lock:
            for d in self._dirs(direction):
                self.channels[d].cut(now, duration_s)

    def inject(self, direction: Direction, data: bytes | Message, seq: int | None = None,
               time_us: int | None = None) -> None:
        """Put raw bytes or a message on the line, between two frames.

        Args:
            direction: ``to_mcu`` or ``to_host``.
            data: Raw bytes (sent as they are), or a message, encoded with ``seq`` and
                ``time_us``: by default the next seq and the time of the last clean frame
                the proxy saw in that direction (a forged frame that looks in sequence).
            seq: Header seq for a message.
            time_us: Header time for a message, µs.
        """
        with self._lock:
            ch = self.channels[direction]
            if isinstance(data, Message):
                s = seq if seq is not None else ((ch.last_seq or 0) + 1) & 0xFFFF
                data = encode_frame(data, s, ch.last_time_us if time_us is None else time_us)
                ch.counters.frames_injected += 1
            ch.inject(bytes(data), time.monotonic())

    def set_rewrite(self, direction: Direction, fn: Rewrite | None) -> None:
        """Replace decoded frames of ``direction`` by ``fn(frame)`` (None: stop rewriting)."""
        with self._lock:
            self.channels[direction].rewrite = fn

    def set_faults(self, direction: Direction, faults: DirectionFaults) -> None:
        """Change one direction's rates and latency from now (its counters are kept)."""
        with self._lock:
            self.channels[direction].faults = faults

    # ------------------------------------------------------------------ what it saw and did
    def frames(self, direction: Direction) -> list[tuple[float, Frame]]:
        """``(arrival monotonic s, frame)`` of each clean frame the sender sent, oldest first."""
        with self._lock:
            return list(self.channels[direction].seen)

    def latest(self, direction: Direction, n: int) -> list[tuple[float, Frame]]:
        """The newest ``n`` clean frames of ``direction`` (cheap: for polling), oldest first."""
        with self._lock:
            seen = self.channels[direction].seen
            return [seen[i] for i in range(max(0, len(seen) - n), len(seen))]

    def counters(self) -> dict[str, int]:
        """Counters of both directions, ``to_mcu_frames_in`` etc., and ``mcu_reopens``."""
        with self._lock:
            out = {f"{d}_{k}": v for d, ch in self.channels.items()
                   for k, v in dataclasses.asdict(ch.counters).items()}
        out["mcu_reopens"] = self.mcu_reopens
        return out

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _dirs(direction: str) -> tuple[Direction, ...]:
        if direction == "both":
            return DIRECTIONS
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r}; allowed: 'to_mcu', 'to_host', 'both'")
        return (direction,)  # type: ignore[return-value]

    def _open_mcu(self) -> None:
        fd = os.open(self.mcu_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        if os.isatty(fd):
            tty.setraw(fd)
        self._mcu.fd = fd

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            return b""
        except OSError:
            if fd == self._mcu.fd:  # the MCU's port went away (unplugged, process ended)
                os.close(fd)
                self._mcu.fd = -1
            return b""

    def _move(self, now: float) -> None:
        for direction, side in (("to_mcu", self._mcu), ("to_host", self._host)):
            ch = self.channels[direction]
            data = ch.pop(now)
            if side.fd < 0:  # the MCU's port is gone: what it was sent is lost
                ch.counters.overflow_bytes += len(data)
                continue
            side.pending += data
            if len(side.pending) > self.max_pending:
                over = len(side.pending) - self.max_pending
                del side.pending[:over]
                ch.counters.overflow_bytes += over
            if side.pending:
                try:
                    n = os.write(side.fd, side.pending)
                except (BlockingIOError, OSError):
                    n = 0
                del side.pending[:n]
                ch.counters.bytes_out += n
            if side is self._mcu:  # ours plus what its tty holds that the MCU has not read
                queued = len(side.pending) + _out_queue(side.fd)
                self.max_device_backlog = max(self.max_device_backlog, queued)


def _out_queue(fd: int) -> int:
    """Bytes written to a tty that its other side has not read yet (TIOCOUTQ); 0 if unknown."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except OSError:
        return 0
