"""One direction of the fault proxy: seeded faults on whole frames, and a clean view.

:class:`FaultChannel` takes the bytes one side sent (``push``) and returns what the other side
receives by a given time (``pop``): frames (ending at 0x00) are decoded for the view before
any fault, then lost in a cut or at the drop rate, rewritten, corrupted byte by byte and
delivered after the latency, never reordered.  :mod:`.fault_proxy` runs two of them between
two ports.  Imports numpy and the standard library only.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
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
