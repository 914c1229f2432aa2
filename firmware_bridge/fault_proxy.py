"""A byte-level fault proxy between a host and an MCU's serial port.

The proxy opens a new pty for the host (``proxy.port``) and relays bytes to and from the
MCU's port (the pty ``karakuri sil`` prints, or a real device).  Each direction has its own
seeded faults, applied to whole frames (a frame ends at 0x00, as on the wire):

- ``corrupt_byte_rate``: each byte XORed with a random non-zero value with this probability
  (it may become 0x00 and split the frame, as line noise does);
- ``drop_frame_rate``: whole frames lost;
- ``latency_s``: every frame delivered this long after it arrived (one-way latency; order
  is kept, a serial line never reorders);
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

import collections
import contextlib
import dataclasses
import math
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from karakuri.firmware_bridge.codec import CodecError
from karakuri.firmware_bridge.protocol import Frame, Message, decode_frame, encode_frame

Direction = Literal["to_mcu", "to_host"]
DIRECTIONS: tuple[Direction, ...] = ("to_mcu", "to_host")
Rewrite = Callable[[Frame], Message | None]
"""Sees each decoded frame of one direction; returns a replacement message or None (as is)."""


@dataclass(frozen=True)
class DirectionFaults:
    """Faults of one direction (all zero: bytes pass unchanged).

    Attributes:
        corrupt_byte_rate: Probability that a byte is corrupted, per byte.
        drop_frame_rate: Probability that a whole frame is lost, per frame.
        latency_s: Every frame is delivered this long after it arrived, s.
        cut_at_s: Start of a cut (frames lost), s after the proxy started; None: no cut.
        cut_s: Length of that cut, s.
    """

    corrupt_byte_rate: float = 0.0
    drop_frame_rate: float = 0.0
    latency_s: float = 0.0
    cut_at_s: float | None = None
    cut_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("corrupt_byte_rate", "drop_frame_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be a probability in [0, 1]")
        for name in ("latency_s", "cut_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be a finite number of seconds >= 0")
        if self.cut_at_s is not None and not (math.isfinite(self.cut_at_s) and self.cut_at_s >= 0):
            raise ValueError(f"cut_at_s={self.cut_at_s} must be >= 0 s (or None: no cut)")


@dataclass
class ChannelCounters:
    """What one direction of the proxy did.

    Attributes:
        bytes_in: Bytes read from the sender.
        bytes_out: Bytes written to the receiver.
        frames_in: Frames (0x00-terminated) read from the sender.
        frames_decoded: Of those, frames that decoded cleanly (the proxy's view).
        bytes_corrupted: Bytes changed.
        frames_dropped: Frames lost at ``drop_frame_rate``.
        frames_cut: Frames lost inside a cut.
        frames_delayed: Frames held back by ``latency_s``.
        frames_rewritten: Frames replaced by the rewrite function.
        frames_injected: Messages injected.
        bytes_injected: Raw bytes injected (messages included).
        overflow_bytes: Bytes the receiver did not take in time (its buffer was full).
    """

    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_decoded: int = 0
    bytes_corrupted: int = 0
    frames_dropped: int = 0
    frames_cut: int = 0
    frames_delayed: int = 0
    frames_rewritten: int = 0
    frames_injected: int = 0
    bytes_injected: int = 0
    overflow_bytes: int = 0


class FaultChannel:
    """One direction: ``push`` bytes from the sender, ``pop`` what is due for the receiver.

    Args:
        faults: The direction's faults.
        rng: Seeded generator (one per direction).
        t0: The proxy's start, monotonic s (origin of ``cut_at_s``).
        keep_frames: How many decoded frames :attr:`seen` keeps.
    """

    def __init__(self, faults: DirectionFaults, rng: np.random.Generator, t0: float,
                 keep_frames: int = 200_000) -> None:
        self.faults, self.rng = faults, rng
        self.counters = ChannelCounters()
        self.rewrite: Rewrite | None = None
        self.seen: collections.deque[tuple[float, Frame]] = collections.deque(maxlen=keep_frames)
        self._partial = bytearray()
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._cuts: list[tuple[float, float]] = []
        if faults.cut_at_s is not None and faults.cut_s > 0:
            self._cuts.append((t0 + faults.cut_at_s, t0 + faults.cut_at_s + faults.cut_s))
        self.last_seq: int | None = None
        self.last_time_us = 0

    def cut(self, start: float, duration_s: float) -> None:
        """Lose every frame arriving in ``[start, start + duration_s)`` (monotonic s)."""
        self._cuts.append((start, start + duration_s))

    def cutting(self, now: float) -> bool:
        """Whether a cut is active at ``now``."""
        return any(a <= now < b for a, b in self._cuts)

    def push(self, data: bytes, now: float) -> None:
        """Bytes read from the sender at ``now`` (monotonic s)."""
        self.counters.bytes_in += len(data)
        *frames, rest = (bytes(self._partial) + data).split(b"\x00")
        self._partial = bytearray(rest)
        for body in frames:
            self._frame(body, now)

    def inject(self, data: bytes, now: float) -> None:
        """Put ``data`` on the line after the frames already queued."""
        self.counters.bytes_injected += len(data)
        self._enqueue(data, now)

    def pop(self, now: float) -> bytes:
        """Bytes due for the receiver by ``now``, in order."""
        out = bytearray()
        while self._queue and self._queue[0][0] <= now:
            out += self._queue.popleft()[1]
        return bytes(out)

    def next_due(self) -> float:
        """When the oldest queued frame is due, monotonic s (inf when none)."""
        return self._queue[0][0] if self._queue else math.inf

    def _frame(self, body: bytes, now: float) -> None:
        c, f = self.counters, self.faults
        if not body:  # a bare delimiter: passes as it is
            self._enqueue(b"\x00", now)
            return
        c.frames_in += 1
        frame = None
        with contextlib.suppress(CodecError):  # not a frame: relayed (and faulted) as bytes
            frame = decode_frame(body)
        if frame is not None:
            c.frames_decoded += 1
            self.seen.append((now, frame))
            self.last_seq, self.last_time_us = frame.seq, frame.time_us
        if self.cutting(now):
            c.frames_cut += 1
            return
        if f.drop_frame_rate and self.rng.random() < f.drop_frame_rate:
            c.frames_dropped += 1
            return
        wire = body + b"\x00"
        if frame is not None and self.rewrite is not None:
            new = self.rewrite(frame)
            if new is not None:
                wire = encode_frame(new, frame.seq, frame.time_us)
                c.frames_rewritten += 1
        if f.corrupt_byte_rate:
            buf = np.frombuffer(wire, dtype=np.uint8).copy()
            hit = np.flatnonzero(self.rng.random(buf.size) < f.corrupt_byte_rate)
            if hit.size:
                buf[hit] ^= self.rng.integers(1, 256, hit.size, dtype=np.uint8)
                c.bytes_corrupted += int(hit.size)
                wire = buf.tobytes()
        if f.latency_s > 0:
            c.frames_delayed += 1
        self._enqueue(wire, now + f.latency_s)

    def _enqueue(self, data: bytes, due: float) -> None:
        if self._queue:
            due = max(due, self._queue[-1][0])  # never reorder
        self._queue.append((due, data))


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
        next_reopen = 0.0
        while not self._stop.is_set() and time.monotonic() < end:
            now = time.monotonic()
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
