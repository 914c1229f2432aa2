from __future__ import annotations

import json

import pytest

from karakuri.policies.metadata import FORMAT_VERSION, PolicyMetadata
from karakuri.robot.policy import PolicyError


def _meta() -> PolicyMetadata:
    joints = ("a", "b", "c")
    return PolicyMetadata(
        robot_name="toy", joint_names=joints, lower=(-1, -2, -3), upper=(1, 2, 3),
        control_rate_hz=50, action_type="joint_position",
        inputs={"joint_pos": {"shape": ["B", 3], "unit": "rad"},
                "last_action": {"shape": ["B", 2], "unit": "1"}},
        robot_spec={"name": "toy", "joint_names": list(joints)}, task="reach", run_id="r1",
        code_version="0.1.0+gabc", observation=("joint_pos_rel", "last_action"),
    )


def test_props_round_trip() -> None:
    meta = _meta()
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert json.loads(props["joint_names"]) == ["a", "b", "c"]
    back = PolicyMetadata.from_props(props)
    assert back == meta
    assert back.lower == (-1.0, -2.0, -3.0) and back.feedback == {"last_action": "action"}
    assert back.format_version == FORMAT_VERSION and back.created == meta.created


@pytest.mark.parametrize("key", ["joint_names", "control_rate_hz", "inputs", "robot_spec",
                                 "format_version"])
def test_missing_key_is_named(key: str) -> None:
    props = _meta().to_props()
    del props[key]
    with pytest.raises(PolicyError, match=f"missing key '{key}'"):
        PolicyMetadata.from_props(props)


@pytest.mark.parametrize(("key", "value"), [("joint_names", "[a, b"), ("control_rate_hz", "fast"),
                                            ("inputs", "[1, 2]"), ("lower", '["x", 1, 2]')])
def test_garbled_key_is_named(key: str, value: str) -> None:
    props = _meta().to_props()
    props[key] = value
    with pytest.raises(PolicyError, match=key):
        PolicyMetadata.from_props(props)


def test_inconsistent_metadata_is_refused() -> None:
    props = _meta().to_props()
    props["upper"] = "[1, 2]"
    with pytest.raises(PolicyError, match="upper has 2 values for 3 joints"):
        PolicyMetadata.from_props(props)
    props = _meta().to_props()
    props["format_version"] = str(FORMAT_VERSION + 1)
    with pytest.raises(PolicyError, match="newer than this runtime"):
        PolicyMetadata.from_props(props)
    props = _meta().to_props()
    props["feedback"] = '{"last_cmd": "action"}'
    with pytest.raises(PolicyError, match=r"'last_cmd'.*not one of the inputs"):
        PolicyMetadata.from_props(props)
