"""The edge inference runtime: one policy file in, joint commands out, no torch.

:class:`OnnxPolicy` loads a file written by ``karakuri export``, checks it against the robot
it is asked to drive, and runs it with preallocated, bound buffers.  Imports numpy and
onnxruntime only (plus the numpy-only robot spec), so it runs on a Jetson-class box
without torch or MuJoCo.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from karakuri.policies.metadata import PolicyMetadata
from karakuri.robot.policy import PolicyError
from karakuri.robot.spec import RobotSpec, RobotSpecError

log = logging.getLogger(__name__)

#: Execution providers in order of preference when none are configured.
DEFAULT_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

#: Signals whose size must equal the robot's joint count.
_PER_JOINT = ("joint_pos", "joint_vel", "joint_effort")


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"policy file {str(path)!r} does not exist") from None
    except OSError as e:
        raise PolicyError(f"policy file {str(path)!r} cannot be read: {e}") from e
    if not data:
        raise PolicyError(f"policy file {str(path)!r} is empty (0 bytes); re-export it")
    return data


def _load_error(path: Path, data: bytes, exc: Exception) -> PolicyError:
    head = data[:8]
    if head.startswith(b"PK"):
        what = ("is a zip archive (a torch checkpoint?), not an ONNX model; "
                "make a policy file with `karakuri export RUN_DIR -o policy.onnx`")
    elif head[0] != 0x08:  # an ONNX ModelProto starts with field 1 (ir_version), varint
        what = f"is not an ONNX model (it starts with {head!r})"
    else:
        what = (f"is truncated or corrupt ({len(data)} bytes; an interrupted copy?): "
                f"onnxruntime says: {exc}")
    return PolicyError(f"policy file {str(path)!r} {what}")


def _provider_list(requested: Sequence[str] | None) -> list[str | tuple[str, dict[str, str]]]:
    available = ort.get_available_providers()
    if requested is None:
        names = [p for p in DEFAULT_PROVIDERS if p in available]
    else:
        names = list(requested)
        missing = [p for p in names if p not in available]
        if missing:
            raise PolicyError(f"execution provider {missing[0]!r} is not in this onnxruntime "
                              f"build; available: {available} (see docs/jetson.md)")
    out: list[str | tuple[str, dict[str, str]]] = []
    for name in names:
        if name == "TensorrtExecutionProvider":  # engines take minutes to build: cache them
            cache = Path.home() / ".cache" / "karakuri" / "trt"
            cache.mkdir(parents=True, exist_ok=True)
            out.append((name, {"trt_engine_cache_enable": "True",
                               "trt_engine_cache_path": str(cache), "trt_fp16_enable": "False"}))
        else:
            out.append(name)
    return out


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def check_fits_robot(meta: PolicyMetadata, robot: RobotSpec | None, rate_hz: float | None,
                     where: str = "policy") -> None:
    """Raise :class:`PolicyError` when ``meta`` does not fit ``robot`` at ``rate_hz``.

    Checks joint names and order, that the policy's limits lie within the robot's (tighter
    is fine), per-joint input sizes and the control rate (``rate_hz``, or the robot's
    ``control_rate_hz`` when ``rate_hz`` is None).  Every message names the mismatch.
    """
    if robot is not None:
        mine, theirs = list(meta.joint_names), list(robot.joint_names)
        if mine != theirs:
            i = next((k for k, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                     min(len(mine), len(theirs)))
            a = repr(mine[i]) if i < len(mine) else "nothing"
            b = repr(theirs[i]) if i < len(theirs) else "nothing"
            raise PolicyError(
                f"{where} does not fit robot {robot.name!r}: joint {i} is {a} in the policy but "
                f"{b} on the robot.\n  policy order: {mine}\n  robot order:  {theirs}\n"
                f"Re-export the policy for this robot, or fix the robot's joint order."
            )
        lo, hi = np.asarray(meta.lower), np.asarray(meta.upper)
        bad = np.flatnonzero((lo < robot.lower - 1e-6) | (hi > robot.upper + 1e-6))
        if bad.size:
            k = int(bad[0])
            raise PolicyError(
                f"{where} may command joint {mine[k]!r} within [{lo[k]:.4g}, {hi[k]:.4g}] but "
                f"robot {robot.name!r} allows [{robot.lower[k]:.4g}, {robot.upper[k]:.4g}]; "
                f"re-export against this robot's limits"
            )
        for name in _PER_JOINT:
            if name in meta.inputs and meta.input_size(name) != robot.n_joints:
                raise PolicyError(f"{where} input {name!r} has size {meta.input_size(name)}, "
                                  f"robot {robot.name!r} has {robot.n_joints} joints")
    rate = rate_hz if rate_hz is not None else (robot.control_rate_hz if robot else None)
    if rate is not None and abs(rate - meta.control_rate_hz) > 1e-6 * meta.control_rate_hz:
        raise PolicyError(
            f"{where} was trained at {meta.control_rate_hz:g} Hz but is asked to run at "
            f"{rate:g} Hz; run the loop at {meta.control_rate_hz:g} Hz or retrain at {rate:g} Hz"
        )


class OnnxPolicy:
    """A policy file, checked and ready to run at a fixed rate.

    ``act`` takes the signals named in ``input_names`` (float32 or float64, each
    (B, size)) and returns ``joint_target`` (B, n_joints), rad.  Inputs named in the
    metadata's ``feedback`` (``last_action``) are fed from the previous call's output when
    the caller leaves them out; :meth:`reset` zeroes them.

    Args:
        path: The ``policy.onnx`` file.
        expected_spec: The robot it will drive; None skips the robot checks.
        rate_hz: The loop rate, Hz; must equal the training rate.  None: the robot's rate.
        providers: Execution providers in order; None: TensorRT, CUDA, CPU as available.
        intra_op_threads: onnxruntime intra-op threads (1: run on the calling thread).
        warmup: Runs at start, so the first real tick is not the slow one.
        data: The file's bytes when already read (deploy passes the bytes whose signature it
            verified, so they are exactly what runs); default: read ``path``.

    Raises:
        PolicyError: unreadable file, missing or garbled metadata, or a mismatch with the
            robot, the rate or the graph; the message names it.
    """

    def __init__(self, path: str | Path, expected_spec: RobotSpec | None = None,
                 rate_hz: float | None = None, providers: Sequence[str] | None = None,
                 intra_op_threads: int = 1, warmup: int = 10, data: bytes | None = None) -> None:
        self.path = Path(path)
        data = _read(self.path) if data is None else data
        try:
            self._session = ort.InferenceSession(data, _session_options(intra_op_threads),
                                                 providers=_provider_list(providers))
        except PolicyError:
            raise
        except Exception as e:  # onnxruntime raises its own, unexported exception types
            raise _load_error(self.path, data, e) from e
        where = f"policy file {str(self.path)!r}"
        self.metadata = PolicyMetadata.from_props(
            self._session.get_modelmeta().custom_metadata_map)
        self._check_graph(where)
        try:
            self.spec = RobotSpec.from_dict(dict(self.metadata.robot_spec))
        except RobotSpecError as e:
            raise PolicyError(f"{where}: robot_spec in its metadata is garbled: {e}") from e
        check_fits_robot(self.metadata, expected_spec, rate_hz, where)
        self.provider: str = self._session.get_providers()[0]
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self.input_names: tuple[str, ...] = tuple(self.metadata.inputs)
        self._feedback = dict(self.metadata.feedback)
        self._outputs = (self.metadata.output,
                         *(o for o in dict.fromkeys(self._feedback.values())
                           if o != self.metadata.output))
        self._batch = 0
        self._allocate(1)
        for _ in range(warmup):
            self._session.run_with_iobinding(self._binding)
        self.reset()
        log.info("%s: robot %s, task %s, %d joints at %g Hz, provider %s",
                 self.path, self.metadata.robot_name, self.metadata.task or "?",
                 self.metadata.n_joints, self.metadata.control_rate_hz, self.provider)

    def _check_graph(self, where: str) -> None:
        meta = self.metadata
        graph = [(i.name, i.shape, i.type) for i in self._session.get_inputs()]
        want = [(n, meta.input_size(n)) for n in meta.inputs]
        have = [(n, s[1] if len(s) == 2 else s) for n, s, _ in graph]
        if want != have or any(t != "tensor(float)" for *_, t in graph):
            raise PolicyError(f"{where}: its metadata lists inputs {want} but the graph has "
                              f"{[(n, s, t) for n, s, t in graph]}; re-export it")
        outs = {o.name: o.shape for o in self._session.get_outputs()}
        for name in (meta.output, *meta.feedback.values()):
            if name not in outs:
                raise PolicyError(f"{where}: output {name!r} named in its metadata is not in the "
                                  f"graph (outputs: {list(outs)})")
        if outs[meta.output][-1] != meta.n_joints:
            raise PolicyError(f"{where}: output {meta.output!r} has shape {outs[meta.output]}, "
                              f"expected (B, {meta.n_joints}) for joints {list(meta.joint_names)}")
        for fed, out in meta.feedback.items():
            if outs[out][-1] != meta.input_size(fed):
                raise PolicyError(f"{where}: feedback {out!r} {outs[out]} does not fit input "
                                  f"{fed!r} of size {meta.input_size(fed)}")

    def _allocate(self, batch: int) -> None:
        """(Re)allocate the input/output buffers for ``batch`` and bind them."""
        outs = {o.name: o.shape for o in self._session.get_outputs()}
        self._in = {n: np.zeros((batch, self.metadata.input_size(n)), np.float32)
                    for n in self.input_names}
        self._out = {n: np.zeros((batch, int(outs[n][-1])), np.float32) for n in self._outputs}
        self._binding = self._session.io_binding()
        for name, buf in self._in.items():
            self._binding.bind_cpu_input(name, buf)
        for name, buf in self._out.items():
            self._binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape),
                                      buf.ctypes.data)
        self._batch = batch

    def reset(self) -> None:
        """Zero the fed-back inputs (``last_action``) before a new episode."""
        for name in self._feedback:
            self._in[name].fill(0.0)
        self._fresh = True

    def act(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """Joint command for one batch of signals.

        Args:
            signals: ``{name: (B, size)}`` float arrays for every name in ``input_names``;
                fed-back inputs may be left out; names the policy does not read are ignored.

        Returns:
            ``joint_target``, rad (m for prismatic joints). Shape: (B, n_joints).  A new array.

        Raises:
            PolicyError: an input is missing, not a float array, or wrongly shaped.
        """
        done = 0
        for name in self.input_names:
            x = signals.get(name)
            if x is None:
                if name in self._feedback:
                    continue
                raise self._missing(name, signals)
            buf = self._in[name]
            if type(x) is not np.ndarray or x.shape != buf.shape or x.dtype != np.float32:
                x = self._checked(name, x, done, signals)
                buf = self._in[name]
            np.copyto(buf, x, casting="same_kind")
            done += 1
        self._session.run_with_iobinding(self._binding)
        for fed, out in self._feedback.items():
            np.copyto(self._in[fed], self._out[out])
        self._fresh = False
        return self._out[self.metadata.output].copy()

    def _missing(self, name: str, signals: Mapping[str, Any]) -> PolicyError:
        return PolicyError(f"policy input {name!r} is missing; the policy reads "
                           f"{list(self.input_names)} (fed back: {list(self._feedback)}), "
                           f"got {sorted(signals)}")

    def _checked(self, name: str, x: Any, done: int, signals: Mapping[str, Any]) -> np.ndarray:
        """The slow path of :meth:`act`: explain a bad input, or switch batch size."""
        x = np.asarray(x)
        size = self.metadata.input_size(name)
        if x.dtype.kind != "f":
            raise PolicyError(f"policy input {name!r} has dtype {x.dtype}; expected float32 "
                              f"(float64 is cast)")
        if x.ndim != 2 or x.shape[1] != size:
            hint = " (add the batch dimension: x[None])" if x.shape == (size,) else ""
            raise PolicyError(f"policy input {name!r} has shape {x.shape}; expected "
                              f"(B, {size}) {self.metadata.inputs[name].get('unit', '')}{hint}")
        if x.shape[0] != self._batch:
            if done:
                raise PolicyError(f"policy input {name!r} has batch {x.shape[0]}, the inputs "
                                  f"before it {self._batch}; all inputs need the same batch")
            held = [f for f in self._feedback if f not in signals]
            if held and not self._fresh:
                raise PolicyError(f"batch size changed from {self._batch} to {x.shape[0]} while "
                                  f"{held} hold the previous tick's output; call reset() first "
                                  f"or pass {held}")
            self._allocate(x.shape[0])
        return x

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session (for benchmarks and diagnostics; ``act`` is the API)."""
        return self._session

    def last_outputs(self) -> dict[str, np.ndarray]:
        """Copies of the outputs of the last :meth:`act` (``joint_target``, ``action``)."""
        return {n: v.copy() for n, v in self._out.items()}

    def describe(self) -> str:
        """One line for logs: file, robot, task, joints, rate, provider, inputs."""
        m = self.metadata
        ins = ", ".join(f"{n}{list(d['shape'])}" for n, d in m.inputs.items())
        return (f"{self.path.name}: robot {m.robot_name}, task {m.task or '?'}, run "
                f"{m.run_id or '?'}, {m.n_joints} joints at {m.control_rate_hz:g} Hz, "
                f"{m.action_type}, provider {self.provider}; inputs {ins}")
