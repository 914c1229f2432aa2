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

The file survives a crash: it is valid MCAP after every flush (at most every 0.25 s), so the
standard reader opens a file whose writer was killed (SIGKILL, OOM) and finds every message up
to the last flush (see :class:`McapTelemetry`).

Only ``mcap`` (pure Python) is imported, and only when a file is opened.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
import zlib
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


MAGIC = b"\x89MCAP0\r\n"
"""The bytes that open and close an MCAP file."""


def _records(*recs: Any) -> bytes:
    """MCAP records serialised back to back (``mcap.records`` classes)."""
    from mcap.data_stream import RecordBuilder

    builder = RecordBuilder()
    for rec in recs:
        rec.write(builder)
    return builder.end()


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
    """Buffered, crash-safe MCAP writer with one JSON channel per topic of :data:`CHANNELS`.

    The file is valid MCAP at every moment, not only after :meth:`close`: each flush (at most
    every ``flush_s``, from :meth:`drain`) writes the messages drained since the last one as
    one chunk, followed by a data-end record and a footer without a summary, in one
    ``pwrite`` over the previous footer; a background thread then syncs the file.  A
    process killed by SIGKILL (or a power cut after the fsync) leaves a file that
    ``mcap.reader.make_reader`` opens and that holds every message up to the last flush.
    :meth:`close` writes the last chunk and the summary (schemas, channels, statistics,
    chunk index), so a cleanly closed file is indexed.  A kill that lands inside the one
    ``pwrite`` of a flush could leave it half written; the window is microseconds per flush.

    Args:
        path: Output file (``.mcap``); its folder is created.
        max_buffered: Messages kept waiting for :meth:`drain`; older ones beyond it are dropped.
        clock: Monotonic clock, s (log times are ``clock()`` in ns).
        flush_s: Longest time drained messages wait before they are written to the file, s.
        fsync: Sync the file to its disk after each flush (in a background thread).

    Raises:
        TelemetryUnavailableError: ``mcap`` is not installed (the message gives the fix).
        OSError: The file cannot be created.
    """

    def __init__(self, path: str | Path, max_buffered: int = 50_000,
                 clock: Callable[[], float] = time.monotonic, flush_s: float = 0.25,
                 fsync: bool = True) -> None:
        try:
            from mcap import records
        except ImportError as e:
            raise TelemetryUnavailableError(
                f"telemetry to {path} needs the 'mcap' package: pip install 'karakuri[telemetry]'"
                f", or remove the telemetry key from the launch file") from e
        if not flush_s > 0:
            raise ValueError(f"flush_s={flush_s} must be > 0 s")
        self._rec = records
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._schemas = [records.Schema(i + 1, json.dumps(s).encode(), "jsonschema", s["title"])
                         for i, s in enumerate(CHANNELS.values())]
        self._chans = [records.Channel(i + 1, topic, "json", {}, i + 1)
                       for i, topic in enumerate(CHANNELS)]
        self._channels = {c.topic: c.id for c in self._chans}
        head = _records(records.Header(profile="", library="karakuri"), *self._schemas,
                        *self._chans)
        self._end = len(MAGIC) + len(head)  # where the data section ends (the footer starts)
        self._pwrite(MAGIC + head + self._tail(), 0)
        self._buf: collections.deque[tuple[int, int, dict[str, Any]]] = collections.deque(
            maxlen=max_buffered)
        self._clock, self._flush_s = clock, flush_s
        self._chunk = bytearray()
        self._chunk_times = [0, 0]
        self._index: list[Any] = []
        self._counts: collections.Counter[int] = collections.Counter()
        self._times = [0, 0]
        self._last_flush = clock()
        self._sync_wanted = threading.Event()
        self._closing = False
        self._syncer = None
        if fsync:
            self._syncer = threading.Thread(target=self._sync_loop, name="mcap-fsync",
                                            daemon=True)
            self._syncer.start()
        self.dropped = 0
        self.written = 0
        self.flushes = 0
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
            state: A :class:`~karakuri.robot.link.JointState`, or None.
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
        """Encode queued messages until ``clock() >= until`` (or all when None); flush.

        The encoded messages are written to the file (:meth:`flush`) once ``flush_s`` has
        passed since the last flush and budget is left.

        Returns:
            How many messages were encoded.
        """
        n = 0
        buf, clock, msg_cls = self._buf, self._clock, self._rec.Message
        while buf and (until is None or clock() < until):
            ch, stamp, msg = buf.popleft()
            data = json.dumps(_jsonable(msg), separators=(",", ":")).encode()
            t = self._chunk_times
            t[:] = [min(t[0], stamp), max(t[1], stamp)] if self._chunk else [stamp, stamp]
            self._chunk += _records(msg_cls(ch, stamp, data, stamp, self._counts[ch]))
            self._counts[ch] += 1
            n += 1
        self.written += n
        if self._chunk and clock() - self._last_flush >= self._flush_s and (
                until is None or clock() < until):
            self.flush()
        return n

    def flush(self) -> None:
        """Write the messages encoded since the last flush as one chunk, then a footer."""
        self._last_flush = self._clock()
        if not self._chunk or self._closed:
            return
        r, data = self._rec, bytes(self._chunk)
        t0, t1 = self._chunk_times
        chunk = _records(r.Chunk(compression="", data=data, message_end_time=t1,
                                 message_start_time=t0, uncompressed_crc=zlib.crc32(data),
                                 uncompressed_size=len(data)))
        self._index.append(r.ChunkIndex(
            chunk_length=len(chunk), chunk_start_offset=self._end, compression="",
            compressed_size=len(data), message_end_time=t1, message_index_length=0,
            message_index_offsets={}, message_start_time=t0, uncompressed_size=len(data)))
        self._times = [t0, t1] if len(self._index) == 1 else [min(self._times[0], t0),
                                                              max(self._times[1], t1)]
        self._pwrite(chunk + self._tail(), self._end)
        self._end += len(chunk)
        self._chunk.clear()
        self.flushes += 1
        self._sync_wanted.set()

    def close(self) -> None:
        """Write everything still queued, finish the file (summary, index), sync and close."""
        if self._closed:
            return
        self.drain()
        self.flush()
        r = self._rec
        data_end = _records(r.DataEnd(0))
        stats = r.Statistics(
            attachment_count=0, channel_count=len(self._chans),
            channel_message_counts=dict(self._counts), chunk_count=len(self._index),
            message_count=sum(self._counts.values()), message_end_time=self._times[1],
            message_start_time=self._times[0], metadata_count=0, schema_count=len(self._schemas))
        summary = _records(*self._schemas, *self._chans, stats, *self._index)
        start = self._end + len(data_end)
        self._pwrite(data_end + summary + _records(r.Footer(start, 0, 0)) + MAGIC, self._end)
        self._closing = True
        self._sync_wanted.set()
        if self._syncer is not None:
            self._syncer.join(timeout=5.0)
            os.fsync(self._fd)
        os.close(self._fd)
        self._closed = True

    def _tail(self) -> bytes:
        """Data end and a footer without summary: a reader reads the data section through."""
        return _records(self._rec.DataEnd(0), self._rec.Footer(0, 0, 0)) + MAGIC

    def _pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def _sync_loop(self) -> None:
        while not self._closing:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._closing:
                return
            try:
                os.fsync(self._fd)
            except OSError:  # closed under us at the end of a run: nothing left to sync
                return

    def __enter__(self) -> McapTelemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
