"""Seeded link faults for the virtual MCU: corrupt bytes, drop frames, delay frames.

One :class:`FaultyChannel` sits on each direction of the virtual MCU's port.  Corruption is
applied per byte (a corrupted byte is XORed with a random non-zero value, so it may become a
0x00 and split a frame, as line noise does); drop and delay act on whole frames (a frame ends
at 0x00).  A delayed frame also holds back the frames behind it: a serial line never
reorders.  Everything is drawn from a seeded generator, so a run is reproducible.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates of the virtual MCU's link (all zero: a perfect link).

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
        for name in ("corrupt_byte_rate", "drop_frame_rate", "delay_frame_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be a probability in [0, 1]")
        if self.delay_s < 0:
            raise ValueError(f"delay_s={self.delay_s} must be >= 0")
        if self.fault_direction not in ("rx", "tx", "both"):
            raise ValueError(f"fault_direction={self.fault_direction!r}; allowed: 'rx' (to the "
                             f"MCU), 'tx' (from the MCU), 'both'")

    @property
    def active(self) -> bool:
        """True when any fault has a non-zero rate."""
        return bool(self.corrupt_byte_rate or self.drop_frame_rate or self.delay_frame_rate)

    def applies_to(self, direction: str) -> bool:
        """Whether the faults act on ``direction`` ("rx" or "tx")."""
        return self.active and self.fault_direction in (direction, "both")


@dataclass
class ChannelStats:
    """What one faulty channel did.

    Attributes:
        bytes_corrupted: Bytes changed.
        frames_dropped: Frames lost.
        frames_delayed: Frames held back.
    """

    bytes_corrupted: int = 0
    frames_dropped: int = 0
    frames_delayed: int = 0


@dataclass
class FaultyChannel:
    """One direction of a link with faults; ``push`` bytes in, ``pop`` what arrives by ``now``.

    Args:
        config: Fault rates.
        stream: Independent stream index for the seed (0: to the MCU, 1: from it).
    """

    config: FaultConfig
    stream: int = 0
    stats: ChannelStats = field(default_factory=ChannelStats)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng([self.config.fault_seed, self.stream])
        self._partial = bytearray()
        self._queue: deque[tuple[float, bytes]] = deque()

    def push(self, data: bytes, now: float) -> None:
        """Send ``data`` into the channel at time ``now`` (s, any monotonic clock)."""
        cfg = self.config
        if cfg.corrupt_byte_rate > 0 and data:
            buf = np.frombuffer(data, dtype=np.uint8).copy()
            hit = np.flatnonzero(self._rng.random(buf.size) < cfg.corrupt_byte_rate)
            if hit.size:
                buf[hit] ^= self._rng.integers(1, 256, hit.size, dtype=np.uint8)
                self.stats.bytes_corrupted += int(hit.size)
            data = buf.tobytes()
        *frames, rest = (bytes(self._partial) + data).split(b"\x00")
        self._partial = bytearray(rest)
        last_due = self._queue[-1][0] if self._queue else now
        for body in frames:
            if cfg.drop_frame_rate and self._rng.random() < cfg.drop_frame_rate:
                self.stats.frames_dropped += 1
                continue
            due = now
            if cfg.delay_frame_rate and self._rng.random() < cfg.delay_frame_rate:
                self.stats.frames_delayed += 1
                due = now + cfg.delay_s
            last_due = max(due, last_due)
            self._queue.append((last_due, body + b"\x00"))

    def pop(self, now: float) -> bytes:
        """Bytes that have arrived by ``now``, in order."""
        out = bytearray()
        while self._queue and self._queue[0][0] <= now:
            out += self._queue.popleft()[1]
        return bytes(out)
