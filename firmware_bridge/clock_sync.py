"""The MCU's clock on the host's: when was a STATE *sampled*, not when did it arrive.

Each STATE carries the MCU's ``time_us`` and ``last_cmd_seq``, the newest COMMAND applied
before it was sampled.  With ``t_tx`` the host time that COMMAND was written and ``t_rx`` the
host time the STATE arrived, the sample was taken on the host clock somewhere in
``[t_tx, t_rx]``, so the offset ``host - mcu`` lies in ``[t_tx - T, t_rx - T]`` (``T`` the
MCU time).  :class:`ClockSync` keeps the tightest such bounds (max of the lower, min of the
upper; each relaxed by a drift allowance as it ages) and estimates the offset as their
midpoint.  One-way latency then shows up as age: with 150 ms each way a STATE is about 150 ms
old when it arrives, where its arrival time would say 0.  Before any COMMAND has been
answered the estimate is the arrival (age 0).

Bounds that contradict each other (the MCU rebooted, its clock stepped: a virtual MCU whose
simulation fell behind the wall clock) restart the estimate from the newest sample.
Standard library only.
"""

from __future__ import annotations

WRAP_US = 1 << 32
"""``time_us`` on the wire wraps at 2**32 µs (about 71.6 min)."""
DRIFT = 200e-6
"""Allowed relative drift between the clocks (two crystals of ±100 ppm)."""


class ClockSync:
    """Offset estimate between the MCU's ``time_us`` and the host's monotonic clock."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new session, a rebooted MCU)."""
        self._last_raw: int | None = None
        self._mcu_s = 0.0
        self._lo: tuple[float, float] | None = None  # (bound, host time it was taken)
        self._hi: tuple[float, float] | None = None
        self.resets = 0

    def mcu_seconds(self, time_us: int) -> float:
        """The MCU time of a frame, unwrapped, s (call once per received frame, in order)."""
        raw = int(time_us) % WRAP_US
        if self._last_raw is None:
            self._mcu_s = raw * 1e-6
        else:
            d = (raw - self._last_raw) % WRAP_US
            self._mcu_s += (d - WRAP_US if d >= WRAP_US // 2 else d) * 1e-6
        self._last_raw = raw
        return self._mcu_s

    def _relaxed(self, now: float) -> tuple[float | None, float | None]:
        lo = None if self._lo is None else self._lo[0] - DRIFT * (now - self._lo[1])
        hi = None if self._hi is None else self._hi[0] + DRIFT * (now - self._hi[1])
        return lo, hi

    def add(self, mcu_s: float, t_rx: float, t_tx: float | None) -> None:
        """Add one STATE's bounds on the offset.

        Args:
            mcu_s: When it was sampled, MCU clock (:meth:`mcu_seconds`), s.
            t_rx: When it arrived, host clock, s.
            t_tx: When the COMMAND it newly reports applied was written, host clock, s; None
                when it reports none new (or one this host did not send).
        """
        lo, hi = self._relaxed(t_rx)
        new_hi, new_lo = t_rx - mcu_s, (None if t_tx is None else t_tx - mcu_s)
        if (lo is not None and new_hi < lo) or (new_lo is not None and hi is not None
                                                 and new_lo > hi):
            self.resets += 1  # contradiction: the MCU's clock jumped; start again
            self._lo = self._hi = None
            lo = hi = None
        if hi is None or new_hi <= hi:
            self._hi = (new_hi, t_rx)
        if new_lo is not None and (lo is None or new_lo >= lo):
            self._lo = (new_lo, t_rx)

    def host_time(self, mcu_s: float, t_rx: float) -> float:
        """When a sample taken at ``mcu_s`` (MCU, s) was taken on the host clock, s.

        Never later than its arrival ``t_rx``.
        """
        lo, hi = self._relaxed(t_rx)
        if lo is None or hi is None:
            return t_rx  # no round trip yet: the arrival is all there is
        return min(mcu_s + 0.5 * (lo + hi), t_rx)

    @property
    def uncertainty_s(self) -> float | None:
        """Half the width of the current offset interval, s (None until a round trip)."""
        if self._lo is None or self._hi is None:
            return None
        return 0.5 * (self._hi[0] - self._lo[0])
