"""What a policy file says about itself: :class:`PolicyMetadata` and its ``metadata_props``.

The exporter writes these strings into the ONNX file's ``metadata_props``; the edge runtime
reads them back through onnxruntime (no ``onnx`` package needed) and checks the robot it is
asked to drive against them.  numpy and the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from karakuri.robot.policy import PolicyError

#: The layout of ``metadata_props`` written by this code.  A reader refuses newer files.
FORMAT_VERSION = 1

#: Which input is fed from which output of the previous tick.
DEFAULT_FEEDBACK: dict[str, str] = {"last_action": "action"}

#: Keys stored as JSON (the rest are plain strings or numbers).
_JSON_KEYS = ("joint_names", "lower", "upper", "inputs", "feedback", "robot_spec", "observation",
              "provenance")

#: Keys a file may lack (written by an older exporter); the field's default is used.
_OPTIONAL_KEYS = ("provenance",)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class PolicyMetadata:
    """Everything the edge runtime needs to know about a policy file, besides its graph.

    Attributes:
        robot_name: The robot the policy was trained for, e.g. ``"industrial_arm"``.
        joint_names: Joints of ``output``'s last dimension, in order.
        lower: Lower joint limits the graph clips to, rad (m for prismatic joints).
        upper: Upper joint limits the graph clips to, rad (m).
        control_rate_hz: The rate the policy was trained at, Hz.
        action_type: How the actor's action becomes a command, e.g. ``"joint_position"``.
        inputs: Graph inputs in order: ``{name: {"shape": ["B", size], "unit": "rad"}}``.
        output: Name of the command output, ``joint_target`` (B, n_joints).
        feedback: Inputs fed from an output of the previous tick, ``{"last_action": "action"}``.
        task: Task name, e.g. ``"reach"``.
        run_id: Training run id.
        code_version: Karakuri version and git commit that exported the file.
        created: ISO 8601 UTC time of export.
        robot_spec: ``RobotSpec.to_dict()`` of the robot, so the edge box needs no MJCF.
        observation: Observation term names, in the order the actor sees them (informative).
        provenance: Where the file came from (:func:`karakuri.policies.provenance.
            run_provenance`: training config and its sha256, code version with a dirty flag,
            package versions, evaluation, run and parent-run hashes); empty when unknown.
        format_version: Layout of the metadata (see :data:`FORMAT_VERSION`).
    """

    robot_name: str
    joint_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    control_rate_hz: float
    action_type: str
    inputs: Mapping[str, Mapping[str, Any]]
    robot_spec: Mapping[str, Any]
    output: str = "joint_target"
    feedback: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FEEDBACK))
    task: str = ""
    run_id: str = ""
    code_version: str = ""
    created: str = field(default_factory=_now_iso)
    observation: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "joint_names", tuple(str(j) for j in self.joint_names))
        set_(self, "observation", tuple(str(x) for x in self.observation))
        for key in ("lower", "upper"):
            try:
                set_(self, key, tuple(float(x) for x in getattr(self, key)))
            except (TypeError, ValueError) as e:
                raise PolicyError(f"policy metadata: {key} must be numbers, got "
                                  f"{getattr(self, key)!r}") from e
        set_(self, "control_rate_hz", float(self.control_rate_hz))
        set_(self, "inputs", {str(k): dict(v) for k, v in self.inputs.items()})
        set_(self, "feedback", {str(k): str(v) for k, v in self.feedback.items()})
        set_(self, "robot_spec", dict(self.robot_spec))
        set_(self, "provenance", dict(self.provenance))
        self._check()

    def _check(self) -> None:
        n = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise PolicyError(f"policy metadata: joint_names must be unique and non-empty, "
                              f"got {list(self.joint_names)}")
        for key in ("lower", "upper"):
            if len(getattr(self, key)) != n:
                raise PolicyError(f"policy metadata: {key} has {len(getattr(self, key))} values "
                                  f"for {n} joints {list(self.joint_names)}")
        bad = [j for j, lo, hi in zip(self.joint_names, self.lower, self.upper, strict=True)
               if not lo < hi]
        if bad:
            raise PolicyError(f"policy metadata: lower >= upper for joints {bad}")
        if not self.control_rate_hz > 0:
            raise PolicyError(f"policy metadata: control_rate_hz must be > 0, "
                              f"got {self.control_rate_hz}")
        if not self.inputs:
            raise PolicyError("policy metadata: no inputs")
        for name, desc in self.inputs.items():
            shape = desc.get("shape")
            if (not isinstance(shape, list) or len(shape) != 2 or not isinstance(shape[1], int)
                    or isinstance(shape[1], bool) or shape[1] <= 0):
                raise PolicyError(f"policy metadata: input {name!r} has shape {shape!r}; "
                                  f"expected ['B', size] with size > 0")
        for fed, out in self.feedback.items():
            if fed not in self.inputs:
                raise PolicyError(f"policy metadata: feedback input {fed!r} (from output "
                                  f"{out!r}) is not one of the inputs {list(self.inputs)}")
        spec_joints = self.robot_spec.get("joint_names")
        if spec_joints is None:
            raise PolicyError("policy metadata: robot_spec has no joint_names")
        if list(spec_joints) != list(self.joint_names):
            raise PolicyError(f"policy metadata: robot_spec joints {list(spec_joints)} differ "
                              f"from joint_names {list(self.joint_names)}")
        if self.format_version > FORMAT_VERSION:
            raise PolicyError(
                f"policy file format version {self.format_version} is newer than this runtime "
                f"reads ({FORMAT_VERSION}); upgrade karakuri on this machine"
            )

    @property
    def n_joints(self) -> int:
        """Number of joints in the command."""
        return len(self.joint_names)

    def input_size(self, name: str) -> int:
        """Size of the last dimension of input ``name``."""
        return int(self.inputs[name]["shape"][1])

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of the ONNX file: one string per field (JSON where needed)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _JSON_KEYS:
                value = json.dumps(list(value) if isinstance(value, tuple) else value,
                                   separators=(",", ":"))
            out[f.name] = str(value)
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> PolicyMetadata:
        """Inverse of :meth:`to_props`.

        Raises:
            PolicyError: a key is missing, or its value is not what the format says; the
                message names the key.
        """
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in props and f.name in _OPTIONAL_KEYS:
                continue
            if f.name not in props:
                raise PolicyError(
                    f"policy metadata is missing key {f.name!r} (present: {sorted(props)}); "
                    f"was the file written by `karakuri export`? Re-export it."
                )
            raw = props[f.name]
            try:
                if f.name in _JSON_KEYS:
                    kwargs[f.name] = json.loads(raw)
                elif f.name == "format_version":
                    kwargs[f.name] = int(raw)
                elif f.name == "control_rate_hz":
                    kwargs[f.name] = float(raw)
                else:
                    kwargs[f.name] = raw
            except ValueError as e:
                raise PolicyError(f"policy metadata key {f.name!r} is garbled: {raw[:80]!r} "
                                  f"({e})") from e
        for key, kind in (("inputs", dict), ("feedback", dict), ("robot_spec", dict),
                          ("joint_names", list), ("lower", list), ("upper", list),
                          ("observation", list), ("provenance", dict)):
            if key in kwargs and not isinstance(kwargs[key], kind):
                raise PolicyError(f"policy metadata key {key!r} is garbled: expected a JSON "
                                  f"{kind.__name__}, got {props[key][:80]!r}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            if isinstance(e, PolicyError):
                raise
            raise PolicyError(f"policy metadata is garbled: {e}") from e
