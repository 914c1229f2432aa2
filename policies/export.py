"""Export a :class:`PolicyModule` to one ONNX policy file, checked against torch first.

Typical use (see :func:`export_policy`)::

    module = build_policy_module(terms, Normalizer.from_vecnormalize(venv),
                                 sb3_actor(model.policy), ActionMap.for_robot(spec, ...))
    meta = make_metadata(module, spec, task="reach", run_id=run_id)
    report = export_policy(module, "policy.onnx", meta, recorded=states)

Needs torch and onnx; the edge runtime (:mod:`karakuri.policies.onnx_policy`) never imports it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from karakuri.policies.export_graph import (
    OUTPUT_NAMES,
    SIGNAL_UNITS,
    ActionMap,
    Normalizer,
    ObsTerm,
    PolicyModule,
    build_policy_module,
    module_act,
    policy_module_for,
)
from karakuri.policies.metadata import DEFAULT_FEEDBACK, PolicyMetadata
from karakuri.policies.provenance import code_info
from karakuri.policies.version import code_version
from karakuri.robot.spec import RobotSpec

__all__ = [
    "SIGNAL_UNITS", "ActionMap", "ExportError", "ExportReport", "Normalizer", "ObsTerm",
    "PolicyModule", "build_policy_module", "export_policy", "make_metadata", "module_act",
    "policy_module_for", "random_signals", "sb3_actor",
]

#: ONNX opset of exported files: native to torch's exporter, and read by onnxruntime >= 1.14.
OPSET = 18
#: IR version written: 9 is read by onnxruntime >= 1.15 (JetPack 6 wheels start at 1.17).
IR_VERSION = 9
#: The export gate: the largest |onnxruntime - torch| accepted on any output entry.
EXPORT_ATOL = 1e-5


class ExportError(RuntimeError):
    """Export refused: the file would not behave like the torch module (nothing written)."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_policy` wrote and how closely onnxruntime matched torch.

    Attributes:
        path: The policy file.
        max_abs_error: Largest |onnxruntime - torch| over all outputs and states.
        max_abs_error_by_output: The same per output (``joint_target``, ``action``).
        n_recorded: Recorded states compared.
        n_random: Random states compared.
        atol: The tolerance the file was held to.
        size_bytes: File size.
        opset: ONNX opset of the graph.
        n_nodes: Nodes in the graph.
    """

    path: Path
    max_abs_error: float
    max_abs_error_by_output: dict[str, float]
    n_recorded: int
    n_random: int
    atol: float
    size_bytes: int
    opset: int
    n_nodes: int

    def __str__(self) -> str:
        return (f"wrote {self.path} ({self.size_bytes / 1024:.1f} KiB, opset {self.opset}, "
                f"{self.n_nodes} nodes); onnxruntime vs torch max |error| "
                f"{self.max_abs_error:.2e} <= {self.atol:.0e} on {self.n_recorded} recorded + "
                f"{self.n_random} random states")


def sb3_actor(policy: Any) -> nn.Module:
    """The deterministic actor of an SB3 policy, obs (B, d) → action (B, a), before clipping.

    PPO/A2C (``ActorCriticPolicy``): features extractor → ``mlp_extractor.policy_net`` →
    ``action_net`` (the Gaussian mean).  SAC: ``actor.latent_pi`` → ``actor.mu`` → tanh.
    TD3: ``actor.mu``.  Duck-typed: SB3 is not imported.  SAC/TD3 act in [-1, 1]; when
    the action space is not [-1, 1] rescale in the action map's ``scale``.
    """
    if hasattr(policy, "mlp_extractor") and hasattr(policy, "action_net"):
        feats = getattr(policy, "pi_features_extractor", None) or policy.features_extractor
        parts = [feats, policy.mlp_extractor.policy_net, policy.action_net]
        if getattr(policy, "squash_output", False):
            parts.append(nn.Tanh())
        return nn.Sequential(*parts)
    actor = getattr(policy, "actor", None)
    if actor is not None and hasattr(actor, "latent_pi") and hasattr(actor, "mu"):
        return nn.Sequential(actor.features_extractor, actor.latent_pi, actor.mu, nn.Tanh())
    if actor is not None and hasattr(actor, "mu"):
        return nn.Sequential(actor.features_extractor, actor.mu)
    raise TypeError(f"{type(policy).__name__} is not an SB3 ActorCriticPolicy, SAC or TD3 "
                    f"policy; pass its deterministic actor module directly")


def make_metadata(module: PolicyModule, spec: RobotSpec, *, task: str = "", run_id: str = "",
                  control_rate_hz: float | None = None,
                  provenance: Mapping[str, Any] | None = None) -> PolicyMetadata:
    """Metadata for ``module`` driving ``spec``: joints, limits, inputs, units, versions.

    Args:
        module: The policy graph.
        spec: The robot it drives; its dict is stored so the edge box needs no MJCF.
        task: Task name, e.g. ``"reach"``.
        run_id: Training run id.
        control_rate_hz: Rate the policy was trained at, Hz; default ``spec.control_rate_hz``.
        provenance: Where the policy came from (:func:`karakuri.policies.provenance.
            run_provenance`); default: only the code that exports it.

    Raises:
        ValueError: the module's joint count differs from the spec's.
    """
    if module.n_joints != spec.n_joints:
        raise ValueError(f"policy commands {module.n_joints} joints, robot {spec.name!r} has "
                         f"{spec.n_joints}: {list(spec.joint_names)}")
    return PolicyMetadata(
        robot_name=spec.name,
        joint_names=spec.joint_names,
        lower=tuple(module.action_map.lower),
        upper=tuple(module.action_map.upper),
        control_rate_hz=spec.control_rate_hz if control_rate_hz is None else control_rate_hz,
        action_type=module.action_map.kind,
        inputs={n: {"shape": ["B", s], "unit": module.signal_units[n]}
                for n, s in module.signal_sizes.items()},
        output=OUTPUT_NAMES[0],
        feedback={k: v for k, v in DEFAULT_FEEDBACK.items() if k in module.signal_sizes},
        task=task,
        run_id=run_id,
        code_version=code_version(),
        robot_spec=spec.to_dict(),
        observation=tuple(t.name for t in module.obs_terms),
        provenance=dict(provenance) if provenance is not None else {"code_at_export": code_info()},
    )


def _check_consistent(module: PolicyModule, meta: PolicyMetadata) -> None:
    want = {n: ["B", s] for n, s in module.signal_sizes.items()}
    have = {n: list(d["shape"]) for n, d in meta.inputs.items()}
    if list(want.items()) != list(have.items()):
        raise ValueError(f"metadata inputs {have} differ from the module's {want}; "
                         f"build the metadata with make_metadata(module, spec)")
    am = module.action_map
    if meta.n_joints != am.n_joints or meta.action_type != am.kind:
        raise ValueError(f"metadata says {meta.n_joints} joints, {meta.action_type!r}; the "
                         f"module commands {am.n_joints} joints, {am.kind!r}")
    if not (np.allclose(meta.lower, am.lower) and np.allclose(meta.upper, am.upper)):
        raise ValueError("metadata limits differ from the limits the graph clips to")
    if meta.output != OUTPUT_NAMES[0] or any(v not in OUTPUT_NAMES for v in meta.feedback.values()):
        raise ValueError(f"metadata output {meta.output!r} / feedback {meta.feedback} must "
                         f"name the graph outputs {list(OUTPUT_NAMES)}")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's benign chatter (missing torchvision, axis renames)."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*")
            yield
    finally:
        log.setLevel(level)


def _to_onnx(module: PolicyModule, opset: int = OPSET) -> onnx.ModelProto:
    """Trace ``module`` (CPU, eval) into an ONNX model with a dynamic batch dimension."""
    batch = torch.export.Dim("batch")
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module, module.example_inputs(2), dynamo=True, opset_version=opset,
            input_names=list(module.input_names), output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"signals": tuple({0: batch} for _ in module.input_names)},
            optimize=True, verbose=False, external_data=False,
        )
    model = program.model_proto
    for node in model.graph.node:  # stack traces of the tracer: bulky, and IR 10 only
        del node.metadata_props[:]
        node.doc_string = ""
    model.ir_version = min(model.ir_version, IR_VERSION)
    return model


def random_signals(module: PolicyModule, meta: PolicyMetadata, n: int, seed: int = 0,
                   ranges: Mapping[str, tuple[np.ndarray | float, np.ndarray | float]] | None
                   = None) -> dict[str, np.ndarray]:
    """Random float32 signals within realistic ranges, each (n, size).

    Joint positions within the joint limits, velocities within the spec's velocity limits,
    ``last_action`` within ``clip_action``, anything else in [-1, 1]; ``ranges`` overrides
    any signal with ``(low, high)`` (scalars or (size,) arrays).
    """
    rng = np.random.default_rng(seed)
    am, spec = module.action_map, meta.robot_spec
    out = {}
    for name, size in module.signal_sizes.items():
        lo: np.ndarray | float = -1.0
        hi: np.ndarray | float = 1.0
        if name == "joint_pos" and size == am.n_joints:
            lo, hi = am.lower, am.upper
        elif name == "joint_vel" and size == am.n_joints and "velocity_limit" in spec:
            hi = np.asarray(spec["velocity_limit"], dtype=np.float64)
            lo = -hi
        elif name == "last_action" and am.clip_action is not None:
            lo, hi = am.clip_action
        if ranges and name in ranges:
            lo, hi = ranges[name]
        out[name] = rng.uniform(lo, hi, size=(n, size)).astype(np.float32)
    return out


def _states(module: PolicyModule, meta: PolicyMetadata,
            recorded: Mapping[str, np.ndarray] | None, n_random: int, seed: int,
            ranges: Mapping[str, tuple[np.ndarray | float, np.ndarray | float]] | None
            ) -> tuple[dict[str, np.ndarray], int]:
    rand = random_signals(module, meta, n_random, seed, ranges)
    if not recorded:
        return rand, 0
    n_rec = -1
    out = {}
    for name, size in module.signal_sizes.items():
        if name not in recorded:
            raise ValueError(f"recorded states lack signal {name!r}; the policy reads "
                             f"{list(module.input_names)}")
        x = np.asarray(recorded[name], dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != size or (n_rec >= 0 and x.shape[0] != n_rec):
            raise ValueError(f"recorded {name!r} has shape {x.shape}, expected (N, {size}) "
                             f"with the same N for every signal")
        n_rec = x.shape[0]
        out[name] = np.concatenate([x, rand[name]])
    return out, n_rec


def _max_errors(module: PolicyModule, model_bytes: bytes, states: dict[str, np.ndarray]
                ) -> tuple[dict[str, float], int]:
    """Max |ORT - torch| per output over all states (one batch, then B=1 on a few)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = [t.numpy() for t in module(*(torch.from_numpy(states[n]) for n in
                                           module.input_names))]
    for name, r in zip(OUTPUT_NAMES, ref, strict=True):
        if not np.all(np.isfinite(r)):
            raise ExportError(f"torch output {name!r} is not finite on some states; the "
                              f"module is broken, nothing was written")
    got = session.run(list(OUTPUT_NAMES), states)
    errors = {name: np.abs(g - r).max(axis=1)
              for name, g, r in zip(OUTPUT_NAMES, got, ref, strict=True)}
    for i in range(min(8, len(ref[0]))):  # the runtime's batch of one
        one = session.run(list(OUTPUT_NAMES), {n: v[i:i + 1] for n, v in states.items()})
        for name, g, r in zip(OUTPUT_NAMES, one, ref, strict=True):
            errors[name][i] = max(errors[name][i], float(np.abs(g[0] - r[i]).max()))
    worst = {n: float(np.nan_to_num(e, nan=np.inf).max()) for n, e in errors.items()}
    name = max(worst, key=lambda k: worst[k])
    return worst, int(np.nan_to_num(errors[name], nan=np.inf).argmax())


def export_policy(module: PolicyModule, path: str | Path, metadata: PolicyMetadata,
                  recorded: Mapping[str, np.ndarray] | None = None, *, n_random: int = 256,
                  atol: float = EXPORT_ATOL, seed: int = 0,
                  ranges: Mapping[str, tuple[np.ndarray | float, np.ndarray | float]]
                  | None = None) -> ExportReport:
    """Write ``module`` as one ONNX policy file, only if onnxruntime reproduces torch.

    The graph has inputs ``module.input_names`` (float32, (B, size), dynamic B) and outputs
    ``joint_target`` (B, n) and ``action`` (B, a); ``metadata`` goes into
    ``metadata_props``.  The file must pass ``onnx.checker`` and match torch within ``atol``
    on every recorded and random state, at the full batch and at batch 1; otherwise nothing
    is written (a file already at ``path`` is left as it was).

    Args:
        module: From :func:`build_policy_module`; exported from a CPU copy.
        path: Where to write the file.
        metadata: From :func:`make_metadata`; must agree with the module.
        recorded: Signals recorded in sim or on the robot, ``{name: (N, size)}``.
        n_random: Random states added (:func:`random_signals`).
        atol: Largest allowed |onnxruntime - torch| on any output entry.
        seed: Seed of the random states.
        ranges: Per-signal ``(low, high)`` overrides for the random states.

    Returns:
        The :class:`ExportReport` (max error, sizes, states compared).

    Raises:
        ExportError: onnxruntime differs from torch by more than ``atol``.
        ValueError: metadata or recorded states do not fit the module.
    """
    if not isinstance(module, PolicyModule):
        raise TypeError(f"export_policy needs a PolicyModule (build_policy_module), got "
                        f"{type(module).__name__}")
    _check_consistent(module, metadata)
    cpu = copy.deepcopy(module).cpu().float().eval()
    model = _to_onnx(cpu)
    onnx.helper.set_model_props(model, metadata.to_props())
    model.doc_string = (f"Karakuri policy: robot {metadata.robot_name}, task "
                        f"{metadata.task or '?'}, run {metadata.run_id or '?'}")
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    states, n_rec = _states(cpu, metadata, recorded, n_random, seed, ranges)
    errors, worst = _max_errors(cpu, data, states)
    err = max(errors.values())
    path = Path(path)
    if not err <= atol:
        where = "recorded" if worst < n_rec else "random"
        raise ExportError(
            f"refusing to write {path}: onnxruntime differs from torch by {err:.3g} > atol "
            f"{atol:.0e} (per output {errors}; worst at {where} state {worst}: "
            f"{ {n: v[worst].tolist() for n, v in states.items()} }); nothing was written"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a policy file is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return ExportReport(path=path, max_abs_error=err, max_abs_error_by_output=errors,
                        n_recorded=n_rec, n_random=n_random, atol=atol, size_bytes=len(data),
                        opset=opset, n_nodes=len(model.graph.node))
