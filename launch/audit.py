"""The audit log of an edge box: append-only, hash-chained JSON lines.

Each line is one JSON object (a *record*) with ``seq`` (0, 1, 2, …), ``time`` (ISO 8601 UTC),
``kind`` (``deploy_start``, ``deploy_end``, ``deploy_refused``, …), the record's own fields,
``prev`` (the previous record's ``hash``; 64 zeros for the first) and ``hash``: sha256 of the
record's canonical JSON without ``hash`` (sorted keys, no spaces, UTF-8).  Editing a record
breaks its hash; removing or reordering records breaks the next record's ``prev`` and ``seq``.
:func:`verify_log` names the first line that does not fit.  What this proves and what it does
not (a truncated tail, a rewritten chain): ``docs/trust.md``.

Standard library only; appends take an exclusive ``flock`` and ``fsync`` the file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: The ``prev`` of the first record.
GENESIS = "0" * 64
#: Environment variable naming the log (a launch file's ``audit_log`` comes first).
AUDIT_ENV = "KARAKURI_AUDIT_LOG"
#: The box-wide default, used when its folder exists and is writable.
SYSTEM_LOG = Path("/var/lib/karakuri/audit.jsonl")


class AuditError(RuntimeError):
    """The audit log cannot be written; the message names the file and the fix."""


def default_log_path() -> Path:
    """Where the audit log goes when the launch file names none.

    ``$KARAKURI_AUDIT_LOG``, else ``/var/lib/karakuri/audit.jsonl`` where that folder is
    writable, else ``$XDG_STATE_HOME/karakuri/audit.jsonl`` (``~/.local/state/...``).
    """
    env = os.environ.get(AUDIT_ENV)
    if env:
        return Path(env).expanduser()
    if SYSTEM_LOG.parent.is_dir() and os.access(SYSTEM_LOG.parent, os.W_OK):
        return SYSTEM_LOG
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "karakuri" / "audit.jsonl"


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON values (JSON has no NaN or infinity).

    Arrays and tuples become lists, paths strings, non-finite floats ``"nan"``/``"inf"``.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # numpy arrays and scalars
        return jsonable(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, int | str):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 (hex) of a record without its ``hash`` key."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class AuditLog:
    """Append records to one hash-chained JSON-lines file (created with its folder).

    Args:
        path: The log file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record of ``kind`` with ``fields``; returns it (with ``seq`` and ``hash``).

        Raises:
            AuditError: the file or its folder cannot be written, or its last line is not a
                record (the chain cannot be continued; run ``karakuri audit verify``).
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as e:
            raise AuditError(f"audit log {self.path}: cannot be opened for appending ({e}); set "
                             f"audit_log in the launch file or ${AUDIT_ENV}") from e
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            seq, prev = self._tail(f)
            now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            rec = {"seq": seq, "time": now, "kind": kind, **jsonable(dict(fields)), "prev": prev}
            rec["hash"] = record_hash(rec)
            try:
                f.write(canonical(rec) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise AuditError(f"audit log {self.path}: write failed: {e}") from e
        return rec

    def _tail(self, f: Any) -> tuple[int, str]:
        """(next seq, hash of the last record) of the open file."""
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0, GENESIS
        chunk, pos = b"", end
        while pos > 0 and chunk.count(b"\n") < 2:
            step = min(4096, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + chunk
        last = chunk.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            rec = json.loads(last)
            return int(rec["seq"]) + 1, str(rec["hash"])
        except (ValueError, KeyError, TypeError) as e:
            raise AuditError(f"audit log {self.path}: its last line is not a record ({e}); run "
                             f"'karakuri audit verify {self.path}'") from e


@dataclass(frozen=True)
class LogReport:
    """What :func:`verify_log` found.

    Attributes:
        path: The log.
        records: Lines that verified before the first bad one (all of them when ``ok``).
        bad_line: The first bad line, 1-based; None when the log verifies.
        problem: What is wrong with that line.
        head: The hash of the last good record (anchor it elsewhere to detect truncation).
        open_deploys: ``deploy_id`` of starts with no end record (a killed process?).
    """

    path: Path
    records: int
    bad_line: int | None = None
    problem: str = ""
    head: str = GENESIS
    open_deploys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every line verified."""
        return self.bad_line is None


def verify_log(path: str | Path) -> LogReport:
    """Check every record's hash, ``prev`` link and ``seq``; stop at the first bad line.

    Raises:
        AuditError: the file cannot be read.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise AuditError(f"audit log {path}: cannot be read: {e}") from e
    if lines and lines[-1] == b"":
        lines.pop()
    prev, started = GENESIS, {}
    for i, line in enumerate(lines):
        problem = _check_line(line, i, prev)
        if problem:
            return LogReport(path, i, i + 1, problem, prev, list(started))
        rec = json.loads(line)
        prev = rec["hash"]
        if rec.get("kind") == "deploy_start":
            started[rec.get("deploy_id")] = True
        elif rec.get("kind") in ("deploy_end", "deploy_error"):
            started.pop(rec.get("deploy_id"), None)
    return LogReport(path, len(lines), head=prev, open_deploys=[str(d) for d in started])


def _check_line(line: bytes, index: int, prev: str) -> str:
    """Why line ``index`` (0-based) is not the record that must follow ``prev``; '' if it is."""
    try:
        rec = json.loads(line)
    except ValueError as e:
        return f"not a JSON record ({e})"
    if not isinstance(rec, dict) or not {"seq", "hash", "prev", "kind"} <= rec.keys():
        return "not an audit record (needs seq, kind, prev and hash)"
    if rec["hash"] != record_hash(rec):
        return f"edited: its content does not match its hash (seq {rec['seq']})"
    if rec["prev"] != prev:
        return (f"out of chain: prev {str(rec['prev'])[:12]}… is not the hash of the line "
                f"before ({prev[:12]}…): a record before it was removed, inserted or moved")
    if rec["seq"] != index:
        return f"seq {rec['seq']} where {index} was due: a record was removed or moved"
    return ""
