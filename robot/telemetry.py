"""Per-tick telemetry to an MCAP file that Foxglove opens.

Messages are JSON with a JSON-schema per channel (``jsonschema`` encoding), so Foxglove plots
them without protobuf definitions, e.g. ``/state.q[0]`` or ``/timing.period_error_us``.

Channels:

- ``/state``: ``q``, ``dq``, ``effort`` (rad, rad/s, N·m), ``age_ms`` (state age at the
  tick), ``status`` (robot status bits), ``seq``;
- ``/command``: ``policy`` (the policy's target, rad), ``target`` (what was sent after the
  safety filter, rad), ``mode`` (0 hold, 1 position), ``command`` (the task command, e.g.
  the reach target xyz in m), ``episode``, ``phase`` (``run`` or ``reset``);
- ``/timing``: ``tick``, ``period_error_us``, ``compute_us``, ``late``, ``missed``;
- ``/safety``: intervention counts per kind, ``latched``, ``reason``; written when they change;
- ``/episode``: one message per finished episode: ``index``, ``command``, ``success``.

Writing never happens between reading the state and sending the command: :meth:`record`
only appends to a buffer, and the loop calls :meth:`drain` in the idle part of the period
with a time budget.  The buffer is bounded; what does not fit is dropped and counted.

Only ``mcap`` (pure Python) is imported, and only when a file is opened.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_NUM = {"type": "number"}
_VEC = {"type": "array", "items": {"type": "number"}}


def _schema(title: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": props}


CHANNELS: dict[str, dict[str, Any]] = {
    "/state": _schema("karakuri.State", {
        "q": _VEC, "dq": _VEC, "effort": _VEC, "age_ms": _NUM, "status": _NUM, "seq": _NUM}),
    "/command": _schema("karakuri.Command", {
        "policy": _VEC, "target": _VEC, "mode": _NUM, "command": _VEC, "episode": _NUM,
        "phase": {"type": "string"}}),
    "/timing": _schema("karakuri.Timing", {
        "tick": _NUM, "period_error_us": _NUM, "compute_us": _NUM, "late": _NUM,
        "missed": _NUM}),
    "/safety": {"title": "karakuri.Safety", "type": "object",
                "additionalProperties": {"type": ["number", "string", "boolean", "null"]}},
    "/episode": _schema("karakuri.Episode", {
        "index": _NUM, "command": _VEC, "success": {"type": ["boolean", "null"]}}),
}


class TelemetryUnavailableError(RuntimeError):
    """Telemetry was asked for but the ``mcap`` package is missing."""


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class McapTelemetry:
    """Buffered MCAP writer with one JSON channel per topic of :data:`CHANNELS`.

    Args:
        path: Output file (``.mcap``); its folder is created.
        max_buffered: Messages kept waiting for :meth:`drain`; older ones beyond it are dropped.
        clock: Monotonic clock, s (log times are ``clock()`` in ns).

    Raises:
        TelemetryUnavailableError: ``mcap`` is not installed (the message gives the fix).
    """

    def __init__(self, path: str | Path, max_buffered: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            from mcap.writer import CompressionType, Writer
        except ImportError as e:
            raise TelemetryUnavailableError(
                f"telemetry to {path} needs the 'mcap' package: pip install 'karakuri[telemetry]'"
                f", or remove the telemetry key from the launch file") from e
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        # No compression: a chunk write is a plain copy, never a pause for zstd/lz4.
        self._writer = Writer(self._file, chunk_size=256 * 1024, compression=CompressionType.NONE)
        self._writer.start(profile="", library="karakuri")
        self._channels: dict[str, int] = {}
        for topic, schema in CHANNELS.items():
            sid = self._writer.register_schema(schema["title"], "jsonschema",
                                               json.dumps(schema).encode())
            self._channels[topic] = self._writer.register_channel(topic, "json", sid)
        self._buf: collections.deque[tuple[int, int, dict[str, Any]]] = collections.deque(
            maxlen=max_buffered)
        self._clock = clock
        self.dropped = 0
        self.written = 0
        self._closed = False

    def record(self, topic: str, msg: dict[str, Any], t: float | None = None) -> None:
        """Queue one message; cheap (an append). Arrays are kept by reference: pass copies.

        Args:
            topic: One of :data:`CHANNELS`.
            msg: Field name -> value (numbers, strings, numpy arrays).
            t: Monotonic time of the sample, s; now when omitted.
        """
        ch = self._channels.get(topic)
        if ch is None:
            raise KeyError(f"unknown telemetry topic {topic!r}; topics: {sorted(CHANNELS)}")
        if len(self._buf) == self._buf.maxlen:
            self.dropped += 1
        stamp = int((self._clock() if t is None else t) * 1e9)
        self._buf.append((ch, stamp, msg))

    def record_tick(self, t: float, state: Any, policy: np.ndarray | None, target: np.ndarray,
                    mode: int, command: np.ndarray | None, episode: int, phase: str) -> None:
        """Queue one tick's ``/state`` (when there is a state) and ``/command`` messages.

        Args:
            t: Tick start, monotonic s.
            state: A :class:`~karakuri.firmware_bridge.link.JointState`, or None.
            policy: The policy's target, rad, shape (n,); None when it did not run.
            target: The target sent after the safety filter, rad. Shape: (n,).
            mode: Command mode sent (0 hold, 1 position).
            command: The task command, e.g. target xyz in m; None outside episodes.
            episode: Episode index (-1 outside episodes).
            phase: ``run`` or ``reset``.
        """
        if state is not None:
            self.record("/state", {"q": state.position, "dq": state.velocity,
                                   "effort": state.effort, "age_ms": (t - state.stamp) * 1e3,
                                   "status": int(state.status), "seq": state.seq}, t)
        self.record("/command", {"policy": [] if policy is None else policy, "target": target,
                                 "mode": mode, "command": [] if command is None else command,
                                 "episode": episode, "phase": phase}, t)

    def drain(self, until: float | None = None) -> int:
        """Encode and write queued messages until ``clock() >= until`` (or all when None).

        Returns:
            How many messages were written.
        """
        n = 0
        buf, clock = self._buf, self._clock
        while buf and (until is None or clock() < until):
            ch, stamp, msg = buf.popleft()
            data = json.dumps(_jsonable(msg), separators=(",", ":")).encode()
            self._writer.add_message(ch, log_time=stamp, data=data, publish_time=stamp)
            n += 1
        self.written += n
        return n

    def close(self) -> None:
        """Write everything still queued, finish the file (summary, index) and close it."""
        if self._closed:
            return
        self.drain()
        self._writer.finish()
        self._file.close()
        self._closed = True

    def __enter__(self) -> McapTelemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
