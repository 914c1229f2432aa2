"""What a deploy runs, resolved from trusted sources: the policy, robot spec, rate and envelope.

Split from :mod:`karakuri.launch.deploy`, which re-exports every name here.  The policy file's
spec, limits and rate are checked against the installed robot description (and the MCU's CAPS),
never used as a source of limits (:mod:`karakuri.robot.envelope`).
"""

from __future__ import annotations

import dataclasses

from karakuri.launch.schema import LaunchConfig, LaunchError
from karakuri.policies.metadata import PolicyMetadata
from karakuri.robot.envelope import (
    Description,
    Envelope,
    EnvelopeError,
    LimitSet,
    load_description,
    policy_claims,
)
from karakuri.robot.policy import Policy, PolicyError
from karakuri.robot.spec import RobotSpec, RobotSpecError


def load_policy(cfg: LaunchConfig, data: bytes | None = None) -> Policy:
    """The :class:`~karakuri.policies.onnx_policy.OnnxPolicy` of ``cfg.policy`` (no torch).

    ``data``: the file's bytes already read and verified (they are what runs); default: read it.
    """
    if not cfg.policy.exists():
        raise LaunchError(f"{cfg.source}: policy: {cfg.policy} does not exist; export one with "
                          f"'karakuri export RUN_DIR -o {cfg.policy}'")
    from karakuri.policies.onnx_policy import OnnxPolicy

    try:
        return OnnxPolicy(cfg.policy, data=data)
    except PolicyError as e:
        raise LaunchError(f"{cfg.source}: policy: {e}") from e


def policy_spec(policy: Policy) -> RobotSpec | None:
    """The robot spec a policy file carries in its metadata, or None (never a source of limits)."""
    spec = getattr(policy, "spec", None)
    if isinstance(spec, RobotSpec):
        return spec
    meta = getattr(policy, "metadata", None)
    robot_spec = getattr(meta, "robot_spec", None)
    return RobotSpec.from_dict(dict(robot_spec)) if robot_spec else None


def resolve_description(cfg: LaunchConfig) -> Description:
    """The robot description installed on this machine that ``cfg.robot`` names (trusted)."""
    try:
        return load_description(cfg.robot)
    except RobotSpecError as e:
        raise LaunchError(f"{cfg.source}: robot: {e}") from e


def resolve_spec(cfg: LaunchConfig, policy: Policy, desc: Description) -> RobotSpec:
    """The spec to drive: the installed description's, checked against what the policy carries.

    The policy file's spec must name the same robot and joints; it is used for the run only
    where the description cannot be read in full here (no MuJoCo), and then its limits are
    replaced by the envelope's (:func:`resolve_envelope`) and its home pose by the sidecar's.
    """
    carried = policy_spec(policy)
    where = f"the policy {cfg.policy}"
    if carried is not None:
        if carried.name != desc.name:
            raise LaunchError(f"{cfg.source}: robot: {cfg.robot!r} is {desc.name!r} but {where} "
                              f"was exported for {carried.name!r}; fix one of them")
        if tuple(carried.joint_names) != desc.joint_names:
            raise LaunchError(f"{cfg.source}: {where} drives joints {list(carried.joint_names)} "
                              f"but robot {desc.name!r} has {list(desc.joint_names)}; re-export "
                              f"the policy for this robot")
    meta = getattr(policy, "metadata", None)
    if isinstance(meta, PolicyMetadata) and desc.spec is not None:
        from karakuri.policies.onnx_policy import check_fits_robot

        try:
            check_fits_robot(meta, desc.spec, meta.control_rate_hz, f"policy {cfg.policy}")
        except PolicyError as e:
            raise LaunchError(f"{cfg.source}: {e}") from e
    if desc.spec is not None:
        return desc.spec
    if carried is None:
        raise LaunchError(f"{cfg.source}: robot {desc.name!r}: its model file cannot be read "
                          f"here (MuJoCo is not installed) and {where} carries no robot spec; "
                          f"re-export the policy or install karakuri[sim]")
    return dataclasses.replace(carried, default_pose=desc.default_pose.copy())


def resolve_rate(cfg: LaunchConfig, policy: Policy, robot: RobotSpec | Description) -> float:
    """The loop rate: the launch file's ``rate_hz``, else the robot description's rate.

    The policy file's training rate is checked against it, never used as its source.
    """
    meta = getattr(policy, "metadata", None)
    claimed = float(getattr(meta, "control_rate_hz", 0.0) or 0.0)
    allowed = float(cfg.rate_hz if cfg.rate_hz is not None else robot.control_rate_hz)
    if claimed and abs(claimed - allowed) > 1e-9 * allowed:
        if cfg.rate_hz is not None:
            raise LaunchError(f"{cfg.source}: rate_hz: {cfg.rate_hz} Hz but the policy was "
                              f"trained at {claimed} Hz; remove rate_hz (or set it to {claimed})")
        raise LaunchError(
            f"{cfg.source}: the policy {cfg.policy} claims a control rate of {claimed:g} Hz but "
            f"robot {robot.name!r} runs at {allowed:g} Hz (its description); refused: a policy "
            f"file's rate is checked, never believed. If this robot may run at {claimed:g} Hz, "
            f"set rate_hz: {claimed:g} in the launch file")
    return allowed


def resolve_envelope(cfg: LaunchConfig, policy: Policy, desc: Description,
                     reported: LimitSet | None, complete: bool = True) -> Envelope:
    """Description ∩ what the robot reports; the policy file's claims checked against it.

    Args:
        cfg: The launch file.
        policy: The policy whose file's claims are checked.
        desc: The installed robot description.
        reported: What the robot reported (the MCU's CAPS), or None.
        complete: Also require a trusted value for every limit (False: check the claims
            against what is known so far, before the link is open).

    Raises:
        LaunchError: a limit has no trusted source, or the policy asks for more (names the
            joint, its value and the limit with its source).
    """
    meta = getattr(policy, "metadata", None)
    carried = policy_spec(policy)
    claims = policy_claims(carried.to_dict() if carried is not None else None,
                           getattr(meta, "lower", None), getattr(meta, "upper", None),
                           desc.joint_names, f"the policy {cfg.policy}")
    try:
        env = Envelope.intersect(desc.joint_names, desc.limits,
                                 *([reported] if reported is not None else []))
        if complete:
            env.check_complete()
        env.check_claims(claims)
    except EnvelopeError as e:
        raise LaunchError(f"{cfg.source}: {e}") from e
    return env


__all__ = ["load_policy", "policy_spec", "resolve_description", "resolve_envelope", "resolve_rate",
           "resolve_spec"]
