"""Provenance: where a policy file came from, for an assessor.

At training time :func:`training_record` goes into the run's ``config.json`` (code version with
a dirty flag, the package versions that trained it, and, when resumed, the hash of the run it
continued).  At export :func:`run_provenance` gathers that with the exact training config and
its sha256, the run's hash and the evaluation the file ships with; the exporter stores it in
the file's ``provenance`` metadata key and ``karakuri inspect`` prints it.

The standard library only (no torch): ``inspect`` on an edge box reads what this wrote.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import karakuri

#: Distributions whose versions are recorded (absent ones are recorded as None).
PACKAGES = ("karakuri", "torch", "mujoco", "stable-baselines3", "rsl-rl-lib", "numpy",
            "gymnasium", "mujoco-warp", "warp-lang", "onnx", "onnxruntime")
#: What a run's hash leaves out: logs, and what is made from the run afterwards.
_NOT_HASHED_DIRS = ("tb",)
_NOT_HASHED_SUFFIXES = (".onnx", ".sig", ".mcap", ".mp4", ".gif", ".log", ".tmp")
#: Evaluation keys lifted into the summary when present (handover: peak speed and force).
_EVAL_KEYS = ("success_rate", "episodes", "seed", "task", "mean_return",
              "peak_zone_speed_max", "peak_contact_force_max", "violation_mean")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_info() -> dict[str, Any]:
    """The code that is running: git commit, ``git describe`` and a dirty flag in a checkout.

    Returns:
        ``{"version", "source": "git"|"package", "commit", "describe", "dirty"}``; outside a
        git checkout only the package version (commit/describe None, dirty None: unknown).
    """
    root = Path(karakuri.__file__).resolve().parent.parent
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {"version": karakuri.__version__, "source": "package", "commit": None,
                "describe": None, "dirty": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"version": karakuri.__version__, "source": "git", "commit": commit,
            "describe": _git(root, "describe", "--always", "--dirty", "--tags"),
            "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of a training config as canonical JSON (sorted keys, no spaces), hex."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def run_hash(run_dir: str | Path) -> str | None:
    """sha256 over one line ``path NUL sha256`` per file of a run, sorted (None: no files).

    Leaves out TensorBoard logs and what is made from the run later (policy files,
    signatures, telemetry, videos), so exporting or deploying does not change it.
    """
    root = Path(run_dir)
    h, n = hashlib.sha256(), 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (not p.is_file() or rel.parts[0] in _NOT_HASHED_DIRS
                or p.name.endswith(_NOT_HASHED_SUFFIXES)):
            continue
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        h.update(f"{rel.as_posix()}\0{digest}\n".encode())
        n += 1
    return h.hexdigest() if n else None


def training_record(run_dir: str | Path, resumed: bool) -> dict[str, Any]:
    """What ``config.json`` keeps about the training itself.

    Args:
        run_dir: The run directory, before its ``config.json`` is (re)written.
        resumed: True when training continues this run's latest checkpoint.

    Returns:
        ``{"code", "packages", "parent_run_hash"}``; the parent is the run's hash before this
        training (None for a fresh run), and earlier parents are kept in ``"ancestors"``.
    """
    parent, ancestors = None, []
    if resumed:
        parent = run_hash(run_dir)
        try:
            old = json.loads((Path(run_dir) / "config.json").read_text()).get("provenance", {})
            ancestors = [*old.get("ancestors", []), *([old["parent_run_hash"]]
                                                      if old.get("parent_run_hash") else [])]
        except (OSError, ValueError, AttributeError):
            ancestors = []
    return {"code": code_info(), "packages": package_versions(), "parent_run_hash": parent,
            "ancestors": ancestors}


def _evaluation(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "eval.json"
    try:
        raw = path.read_bytes()
        full = json.loads(raw)
    except (OSError, ValueError):
        return None
    if not isinstance(full, dict):
        return None
    summary = {k: full[k] for k in _EVAL_KEYS if k in full}
    return {**summary, "eval_json_sha256": hashlib.sha256(raw).hexdigest(), "eval_json": full}


def run_provenance(run_dir: str | Path) -> dict[str, Any]:
    """Everything an assessor asks about the run a policy file is exported from.

    Returns:
        ``{"training_config", "training_config_sha256", "code", "code_at_export",
        "packages", "packages_at_export", "evaluation", "run_hash", "parent_run_hash"}``.
        ``code``/``packages`` are the training's when ``config.json`` recorded them (runs
        made before provenance existed: None, and ``code_version`` from the config).
    """
    run_dir = Path(run_dir)
    try:
        doc = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        doc = {}
    config = doc.get("config")
    trained = doc.get("provenance") or {}
    return {
        "training_config": config,
        "training_config_sha256": config_sha256(config) if isinstance(config, dict) else None,
        "code": trained.get("code") or {"version": doc.get("code_version"), "source": "config"},
        "code_at_export": code_info(),
        "packages": trained.get("packages"),
        "packages_at_export": package_versions(),
        "evaluation": _evaluation(run_dir),
        "run_id": run_dir.name,
        "run_hash": run_hash(run_dir),
        "parent_run_hash": trained.get("parent_run_hash"),
        "ancestors": trained.get("ancestors", []),
    }
