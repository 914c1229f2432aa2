"""Seeded link faults on one direction of a serial line, and a clean view of its frames.

:class:`FaultChannel` takes the bytes one side sent (``push``) and returns what the other side
receives by a given time (``pop``): frames (ending at 0x00) are decoded for the view before
any fault, then lost in a cut or at the drop rate, rewritten, corrupted byte by byte (a byte
may become 0x00 and split the frame, as line noise does) and delivered after the latency or
a random delay, never reordered (a serial line never reorders).  Everything is drawn from a
seeded generator, so a run is reproducible.

Two users: :mod:`.fault_proxy` runs two channels between two ports (``karakuri proxy``, the
QEMU board's faults), and the virtual MCU runs two on its own port; both take their rates
from :class:`FaultConfig` (the ``faults:`` of a launch file's link) or
:class:`DirectionFaults`.  Imports numpy and the standard library only.
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
        delay_frame_rate: Probability that a frame (and those behind it) is held back.
        delay_s: How long such a frame is held back (on top of the latency), s.
    """

    corrupt_byte_rate: float = 0.0
    drop_frame_rate: float = 0.0
    latency_s: float = 0.0
    cut_at_s: float | None = None
    cut_s: float = 0.0
    delay_frame_rate: float = 0.0
    delay_s: float = 0.01

    def __post_init__(self) -> None:
        _check_rates(self, ("corrupt_byte_rate", "drop_frame_rate", "delay_frame_rate"))
        for name in ("latency_s", "cut_s", "delay_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be a finite number of seconds >= 0")
        if self.cut_at_s is not None and not (math.isfinite(self.cut_at_s) and self.cut_at_s >= 0):
            raise ValueError(f"cut_at_s={self.cut_at_s} must be >= 0 s (or None: no cut)")


def _check_rates(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must be a probability in [0, 1]")


@dataclass(frozen=True)
class FaultConfig:
    """Link faults of a simulated port (the virtual MCU's, the QEMU board's); all zero: none.

    The ``faults:`` of a launch file's ``sil`` or ``qemu`` link and ``karakuri sil``'s flags.

    Attributes:
        corrupt_byte_rate: Probability that a byte is corrupted, per byte.
        drop_frame_rate: Probability that a whole frame is lost, per frame.
        delay_frame_rate: Probability that a frame (and those behind it) is held back.
        delay_s: How long a delayed frame is held back, s.
        fault_direction: Which direction the faults apply to: to the MCU, from it, or both.
        fault_seed: Seed of the fault generator.
    """

    corrupt_byte_rate: float = 0.0
    drop_frame_rate: float = 0.0
    delay_frame_rate: float = 0.0
    delay_s: float = 0.01
    fault_direction: Literal["rx", "tx", "both"] = "both"
    fault_seed: int = 0

    def __post_init__(self) -> None:
        _check_rates(self, ("corrupt_byte_rate", "drop_frame_rate", "delay_frame_rate"))
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"delay_s={self.delay_s} must be >= 0")
        if self.fault_direction not in ("rx", "tx", "both"):
            raise ValueError(f"fault_direction={self.fault_direction!r}; allowed: 'rx' (to the "
                             f"MCU), 'tx' (from the MCU), 'both'")

    @property
    def active(self) -> bool:
        """True when any fault has a non-zero rate."""
        return bool(self.corrupt_byte_rate or self.drop_frame_rate or self.delay_frame_rate)

    def applies_to(self, direction: str) -> bool:
        """Whether the faults act on ``direction`` ("rx": to the MCU, or "tx": from it)."""
        return self.active and self.fault_direction in (direction, "both")

    def direction(self, direction: Direction) -> DirectionFaults:
        """The faults of ``to_mcu`` (rx) or ``to_host`` (tx); none where they do not apply."""
        if not self.applies_to("rx" if direction == "to_mcu" else "tx"):
            return DirectionFaults()
        return DirectionFaults(corrupt_byte_rate=self.corrupt_byte_rate,
                               drop_frame_rate=self.drop_frame_rate,
                               delay_frame_rate=self.delay_frame_rate, delay_s=self.delay_s)

    def channels(self, t0: float = 0.0, keep_frames: int = 0) -> tuple[FaultChannel, FaultChannel]:
        """``(to_mcu, to_host)`` channels, seeded by ``fault_seed`` (one stream each)."""
        to_mcu, to_host = (
            FaultChannel(self.direction(d), np.random.default_rng([self.fault_seed, i]), t0,
                         keep_frames=keep_frames) for i, d in enumerate(DIRECTIONS))
        return to_mcu, to_host


FAULT_COUNTERS = ("bytes_corrupted", "frames_dropped", "frames_delayed")
"""The counters that say what the injected faults did (the virtual MCU reports these)."""


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

    def fault_counts(self) -> dict[str, int]:
        """What the injected faults did: :data:`FAULT_COUNTERS` by name."""
        return {k: getattr(self, k) for k in FAULT_COUNTERS}


class FaultChannel:
    """One direction: ``push`` bytes from the sender, ``pop`` what is due for the receiver.

    Args:
        faults: The direction's faults.
        rng: Seeded generator (one per direction).
        t0: The proxy's start, monotonic s (origin of ``cut_at_s``).
        keep_frames: How many decoded frames :attr:`seen` keeps; 0: frames are not decoded
            (no view, no rewrite, no :attr:`last_seq`), which spares the CPU.
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
        if self.seen.maxlen:
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
        delay = f.latency_s
        if f.delay_frame_rate and self.rng.random() < f.delay_frame_rate:
            delay += f.delay_s
        if delay > 0:
            c.frames_delayed += 1
        self._enqueue(wire, now + delay)

    def _enqueue(self, data: bytes, due: float) -> None:
        if self._queue:
            due = max(due, self._queue[-1][0])  # never reorder
        self._queue.append((due, data))
