"""What a deploy writes to the edge box's audit log (:mod:`karakuri.launch.audit`).

Per deploy, two records with one ``deploy_id``:

* ``deploy_start``, after the policy file is trusted and before it is loaded: time, host,
  operator, OS user, the launch file and its sha256, the policy file, its sha256, signer and
  trust status (an opt-out names itself), the link kind and the robot the launch file names;
* ``deploy_end`` (or ``deploy_error``): the robot driven, the loop rate, the effective safety
  envelope (the limits the safety filter enforced, and their sources), each arm, e-stop and
  fault event, the end summary, and the telemetry file by sha256.

A refused file gives one ``deploy_refused`` record instead.  A start with no end is a deploy
that was killed; ``karakuri audit verify`` lists them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import karakuri
from karakuri.launch.audit import AuditError, AuditLog, default_log_path
from karakuri.launch.schema import LaunchConfig, LaunchError
from karakuri.launch.trust import PolicyTrustError, TrustDecision, check_trust, in_process
from karakuri.policies.signing import file_sha256

#: Environment variable naming the operator (wins over the launch file's ``operator``).
OPERATOR_ENV = "KARAKURI_OPERATOR"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _file_ref(path: Path | None) -> dict[str, Any] | None:
    """``{"path", "sha256", "bytes"}`` of a file, or None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    return {"path": str(path), "sha256": file_sha256(path), "bytes": Path(path).stat().st_size}


class _AuditedLink:
    """A link that notes each arm and e-stop it is asked for (everything else passes through)."""

    def __init__(self, link: Any, events: list[dict[str, Any]], t0: float) -> None:
        self._link, self._events, self._t0 = link, events, t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    def _note(self, kind: str, detail: str) -> None:
        self._events.append({"t_s": round(time.monotonic() - self._t0, 4), "time": _now(),
                             "event": kind, "detail": detail})

    def rearm(self) -> None:
        """Arm (or re-arm) the robot; noted as an ``arm`` event."""
        self._note("arm", "host asked the robot to arm")
        self._link.rearm()

    def estop(self) -> None:
        """E-stop the robot; noted as an ``estop`` event."""
        self._note("estop", "host e-stop")
        self._link.estop()


class DeployAudit:
    """The audit records of one deploy.

    Args:
        cfg: The launch file.
        log: Where warnings go (printed once at start).
    """

    def __init__(self, cfg: LaunchConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.book = AuditLog(cfg.audit_log or default_log_path())
        self.deploy_id = uuid.uuid4().hex[:16]
        self.trust: TrustDecision | None = None
        self.events: list[dict[str, Any]] = []
        self.run: dict[str, Any] = {}
        self.notes: list[str] = []
        self._t0 = time.monotonic()
        self._safety: Any = None

    @property
    def path(self) -> Path:
        """The audit log file."""
        return self.book.path

    def _append(self, kind: str, fields: dict[str, Any]) -> None:
        try:
            self.book.append(kind, {"deploy_id": self.deploy_id, **fields})
        except AuditError as e:
            raise LaunchError(f"{self.cfg.source}: audit_log: {e}") from e

    def _who(self) -> dict[str, Any]:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return {"host": socket.gethostname(), "operator": os.environ.get(OPERATOR_ENV)
                or self.cfg.operator, "user": user, "pid": os.getpid(),
                "karakuri": karakuri.__version__,
                "launch": _file_ref(self.cfg.source) or {"path": str(self.cfg.source)},
                "link": self.cfg.link_kind, "robot": self.cfg.robot}

    # ------------------------------------------------------------------ stages
    def check_policy(self, policy: Any = None) -> TrustDecision:
        """Trust the policy file (or note an in-process policy) and append ``deploy_start``.

        Raises:
            PolicyTrustError: the file is refused; a ``deploy_refused`` record is appended.
            LaunchError: the file or a trusted key is missing, or the log cannot be written.
        """
        try:
            self.trust = in_process(self.cfg) if policy is not None else check_trust(self.cfg)
        except LaunchError as e:
            fields = {**self._who(), "policy": {"path": str(self.cfg.policy), "sha256":
                      (_file_ref(self.cfg.policy) or {}).get("sha256", "")},
                      "reason": getattr(e, "reason", "launch error"), "error": str(e)}
            with contextlib.suppress(LaunchError):  # the refusal is what the user must see
                self._append("deploy_refused", fields)
            raise
        if self.trust.warning:
            self.log(self.trust.warning)
            if self.trust.opt_out == "allow_unsigned: true":
                self.notes.append(self.trust.warning)
        self._append("deploy_start", {**self._who(), "policy": self.trust.as_record()})
        return self.trust

    def watch(self, link: Any, *, spec: Any, rate_hz: float, safety: Any,
              envelope: Any = None) -> Any:
        """Note what the loop will run with and return ``link`` wrapped to note arm/e-stop.

        Args:
            link: The connected link the loop will drive.
            spec: The robot spec driven.
            rate_hz: The loop rate, Hz.
            safety: The :class:`~karakuri.robot.safety.SafetyFilter` the loop uses; its
                limits are the effective envelope.
            envelope: The :class:`~karakuri.robot.envelope.Envelope` (for its sources).
        """
        lim = safety.limits
        ws = getattr(lim, "workspace", None)
        self._safety = safety
        self.run = {
            "robot": {"name": spec.name, "joints": list(spec.joint_names)},
            "rate_hz": rate_hz,
            "envelope": {
                "sources": [*getattr(envelope, "sources", ()), "launch safety overrides"],
                "lower": lim.lower, "upper": lim.upper,
                "velocity_limit": lim.velocity_limit, "accel_limit": lim.accel_limit,
                "workspace": dataclasses.asdict(ws) if dataclasses.is_dataclass(ws) else ws},
        }
        return _AuditedLink(link, self.events, self._t0)

    def end(self, summary: Any, telemetry: Path | None) -> None:
        """Append ``deploy_end``: events (faults included), the summary, the telemetry file."""
        events = list(self.events)
        estop = getattr(self._safety, "estop_reason", None)
        if estop and not any(e["event"] == "estop" for e in events):
            events.append({"time": _now(), "event": "estop", "detail": estop})
        for fault in [summary.fault, *summary.link_faults]:
            if fault:
                events.append({"time": _now(), "event": "fault", "detail": fault})
        s = dataclasses.asdict(summary)
        s["success_rate"] = summary.success_rate
        self._append("deploy_end", {**self.run, "events": events, "summary": s,
                                    "telemetry": _file_ref(telemetry), "warnings": self.notes})

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Append ``deploy_error`` (with the events so far) when the body raises."""
        try:
            yield
        except BaseException as e:
            kind = "deploy_refused" if isinstance(e, PolicyTrustError) else "deploy_error"
            with contextlib.suppress(LaunchError):
                self._append(kind, {**self.run, "events": self.events,
                                    "error": f"{type(e).__name__}: {e}", "warnings": self.notes})
            raise
