from pathlib import Path

import numpy as np
import pytest
import yaml

from karakuri.firmware_bridge.ros2_config import Ros2LinkConfig
from karakuri.launch.deploy import build_safety
from karakuri.launch.schema import (
    LINKS,
    LaunchError,
    SerialLinkConfig,
    SilLinkConfig,
    load_launch,
    parse_launch,
)
from karakuri.robot.loop_commands import BoxTargets, FixedTargets
from karakuri.robot.spec import RobotSpec
from karakuri.sim.tasks.reach import ReachConfig

LAUNCH = Path(__file__).resolve().parents[2] / "launch"
BASE = {"robot": "industrial_arm", "policy": "p.onnx", "link": {"kind": "sil"},
        "command": {"targets": [[0.4, 0.0, 0.3]], "hold_s": 2.0}}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "launch.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def with_(**kw) -> dict:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    d.update(kw)
    return d


def test_shipped_launch_files_parse():
    sil = load_launch(LAUNCH / "reach_sil.yaml")
    assert isinstance(sil.link, SilLinkConfig) and sil.link_kind == "sil"
    assert sil.policy == (LAUNCH.parent / "runs/reach/policy.onnx").resolve()
    src = sil.command.source()
    assert isinstance(src, BoxTargets) and src.count == 50
    assert src.hold_s == ReachConfig().episode_s  # each target is held for reach's episode
    hw = load_launch(LAUNCH / "reach_serial.yaml")
    assert isinstance(hw.link, SerialLinkConfig) and hw.link.port == "/dev/ttyACM0"
    assert hw.safety.velocity_scale == 0.5 and hw.realtime.cpus == (3,)
    assert hw.safety.position_limits["shoulder_lift"] == (-2.8, -0.3)
    assert isinstance(hw.command.source(), FixedTargets)


def test_unknown_key_names_key_path_and_file(tmp_path):
    p = write(tmp_path, with_(link={"kind": "sil", "baud": 115200}))
    with pytest.raises(LaunchError, match=r"launch\.yaml: link\.baud: unknown key 'baud'"):
        load_launch(p)
    p = write(tmp_path, with_(telemetri="x.mcap"))
    with pytest.raises(LaunchError, match=r"launch\.yaml: telemetri: unknown key"):
        load_launch(p)
    p = write(tmp_path, with_(command={"box": {"lower": [0], "upper": [1], "count": 1,
                                                "sed": 1}, "hold_s": 1.0}))
    with pytest.raises(LaunchError, match=r"command\.box\.sed"):
        load_launch(p)


def test_wrong_type_names_key_and_expected_type(tmp_path):
    with pytest.raises(LaunchError, match=r"rate_hz: expected a number, got 'fast'"):
        load_launch(write(tmp_path, with_(rate_hz="fast")))
    with pytest.raises(LaunchError, match=r"realtime\.mlockall: expected true or false"):
        load_launch(write(tmp_path, with_(realtime={"mlockall": "yes"})))
    with pytest.raises(LaunchError, match=r"command\.targets\[0\]\[1\]: expected a number"):
        load_launch(write(tmp_path, with_(command={"targets": [[0.4, "y", 0.3]],
                                                   "hold_s": 1.0})))


def test_missing_required_key(tmp_path):
    d = with_()
    del d["policy"]
    with pytest.raises(LaunchError, match=r"policy: missing required key 'policy'"):
        load_launch(write(tmp_path, d))
    with pytest.raises(LaunchError, match=r"link\.port: missing required key"):
        load_launch(write(tmp_path, with_(link={"kind": "serial"})))


def test_link_kind_checked(tmp_path):
    with pytest.raises(LaunchError, match=r"link\.kind: 'can' is not one of"):
        load_launch(write(tmp_path, with_(link={"kind": "can"})))
    cfg = load_launch(write(tmp_path, with_(link={"kind": "ros2", "namespace": "/arm1"})))
    assert isinstance(cfg.link, Ros2LinkConfig) and cfg.link.namespace == "/arm1"
    with pytest.raises(LaunchError, match=r"link\.namespace.*must start with '/'|namespace"):
        load_launch(write(tmp_path, with_(link={"kind": "ros2", "namespace": "arm1"})))


def test_values_checked_with_the_key(tmp_path):
    with pytest.raises(LaunchError, match=r"command: give exactly one of"):
        load_launch(write(tmp_path, with_(command={"hold_s": 1.0})))
    with pytest.raises(LaunchError, match=r"link\.faults: .*drop_frame_rate"):
        load_launch(write(tmp_path, with_(link={"kind": "sil",
                                                "faults": {"drop_frame_rate": 2.0}})))
    cfg = load_launch(write(tmp_path, with_(link={"kind": "sil", "faults": {
        "corrupt_byte_rate": 0.01, "drop_frame_rate": 0.01}})))
    assert cfg.link.faults.corrupt_byte_rate == 0.01
    with pytest.raises(LaunchError, match=r"safety: velocity_scale: 1.5"):
        load_launch(write(tmp_path, with_(safety={"velocity_scale": 1.5})))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        load_launch(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot: [unclosed")
    with pytest.raises(LaunchError, match="not valid YAML"):
        load_launch(bad)
    with pytest.raises(LaunchError, match="expected a mapping"):
        parse_launch(["a"], tmp_path / "list.yaml")


def test_relative_paths_resolve_against_the_launch_file(tmp_path):
    sub = tmp_path / "cell"
    sub.mkdir()
    cfg = load_launch(write(sub, with_(telemetry="logs/run.mcap", robot="../arm.yaml")))
    assert cfg.telemetry == (sub / "logs/run.mcap").resolve()
    assert cfg.policy == (sub / "p.onnx").resolve()
    assert cfg.robot == str((tmp_path / "arm.yaml").resolve())


def toy_spec() -> RobotSpec:
    return RobotSpec(name="toy", joint_names=("a", "elbow"), lower=-np.ones(2), upper=np.ones(2),
                     velocity_limit=np.array([2.0, 2.0]), effort_limit=np.ones(2),
                     accel_limit=np.array([10.0, 10.0]), default_pose=np.zeros(2),
                     kp=np.ones(2), kd=np.ones(2), arm_joints=("a", "elbow"))


def test_looser_safety_override_rejected_naming_key_and_file(tmp_path):
    cfg = load_launch(write(tmp_path, with_(safety={"velocity_limit": {"elbow": 3.0}})))
    with pytest.raises(LaunchError, match=r"launch\.yaml: safety\.velocity_limit\.elbow: 3\.0 "
                                          r"is looser"):
        build_safety(cfg, toy_spec(), 50.0)
    cfg = load_launch(write(tmp_path, with_(safety={"position_limits": {"a": [-2.0, 0.5]}})))
    with pytest.raises(LaunchError, match=r"safety\.position_limits\.a"):
        build_safety(cfg, toy_spec(), 50.0)
    cfg = load_launch(write(tmp_path, with_(safety={"velocity_limit": {"elbow": 1.0}})))
    f = build_safety(cfg, toy_spec(), 50.0)
    assert f.limits.velocity_limit.tolist() == [2.0, 1.0]


def test_every_shipped_launch_file_loads():
    files = sorted(LAUNCH.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        cfg = load_launch(path)
        assert cfg.link_kind in LINKS, path


def test_sections_are_the_runtime_config_dataclasses():
    """loop:, command.box/plant_signal and link (sil) carry the runtime's own fields."""
    import dataclasses

    from karakuri.firmware_bridge.virtual_mcu_config import VirtualMCUConfig
    from karakuri.launch.schema import LoopSection, PlantSignalSection, TargetBox
    from karakuri.robot.loop_commands import PlantSignal
    from karakuri.robot.loop_config import LoopConfig

    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert names(LoopSection) == names(LoopConfig) - {"rate_hz", "duration_s", "arm_on_start",
                                                      "arm_timeout_s"}
    assert names(TargetBox) == names(BoxTargets) - {"hold_s", "reset_s"}
    assert names(PlantSignalSection) == names(PlantSignal) - {"hold_s", "reset_s", "read",
                                                             "layout"}
    assert names(VirtualMCUConfig) <= names(SilLinkConfig)
    for f in dataclasses.fields(LoopSection):  # same defaults as the runtime
        assert f.default == next(g.default for g in dataclasses.fields(LoopConfig)
                                 if g.name == f.name)
    loop = LoopSection(stale_fault_s=0.5).build(rate_hz=50.0, duration_s=None)
    assert isinstance(loop, LoopConfig) and loop.stale_fault_s == 0.5


def test_sil_keys_reach_the_virtual_mcu_config(tmp_path):
    cfg = load_launch(write(tmp_path, with_(link={"kind": "sil", "paced": False,
                                                  "max_lag_s": 0.05})))
    mcu = cfg.link.mcu_config(rate_hz=50.0)
    assert (mcu.paced, mcu.max_lag_s, mcu.state_rate_hz) == (False, 0.05, 50.0)
    with pytest.raises(LaunchError, match=r"link\.realtime: unknown key 'realtime'"):
        load_launch(write(tmp_path, with_(link={"kind": "sil", "realtime": False})))
    with pytest.raises(LaunchError, match=r"link: max_lag_s=0.0 must be > 0"):
        load_launch(write(tmp_path, with_(link={"kind": "sil", "max_lag_s": 0.0})))


def test_loop_rules_are_the_runtime_rules(tmp_path):
    with pytest.raises(LaunchError, match=r"loop: spin_s: -1.0 must be a finite number >= 0"):
        load_launch(write(tmp_path, with_(loop={"spin_s": -1.0})))
    with pytest.raises(LaunchError, match=r"loop\.stale_fault_s: 0.01 s is too small"):
        load_launch(write(tmp_path, with_(rate_hz=50.0, loop={"stale_fault_s": 0.01})))
    from karakuri.robot.loop_config import LoopConfig

    with pytest.raises(ValueError, match=r"first_state_timeout_s: 0.0 must be a finite"):
        LoopConfig(50.0, first_state_timeout_s=0.0)


def test_box_seed_defaults_to_zero_and_builds_the_runtime_source(tmp_path):
    cfg = load_launch(write(tmp_path, with_(command={
        "box": {"lower": [0.3, -0.1, 0.2], "upper": [0.5, 0.1, 0.4], "count": 3},
        "hold_s": 1.5, "reset_s": 0.5})))
    src = cfg.command.source()
    assert isinstance(src, BoxTargets)
    assert (src.seed, src.count, src.hold_s, src.reset_s) == (0, 3, 1.5, 0.5)
    with pytest.raises(LaunchError, match=r"command\.box\.hold_s: unknown key"):
        load_launch(write(tmp_path, with_(command={
            "box": {"lower": [0.0], "upper": [1.0], "count": 1, "hold_s": 1.0}, "hold_s": 1.0})))


def test_link_registry_lists_the_valid_kinds(tmp_path):
    assert set(LINKS) == {"serial", "sil", "ros2", "qemu"}
    with pytest.raises(LaunchError, match=r"'can' is not one of \['serial', 'sil', 'ros2', "
                                          r"'qemu'\]"):
        load_launch(write(tmp_path, with_(link={"kind": "can"})))


def test_sil_realtime_flag_is_the_deprecated_name_of_paced(capsys):
    import argparse

    from karakuri.launch.commands import sil

    sub = argparse.ArgumentParser().add_subparsers()
    sil.register(sub)
    p = sub.choices["sil"]
    assert p.parse_args([]).paced is True
    assert p.parse_args(["--no-paced"]).paced is False
    assert p.parse_args(["--no-realtime"]).paced is False
    assert "--no-realtime is deprecated; use --no-paced" in capsys.readouterr().err


@pytest.mark.parametrize(("state_rate_hz", "period_us"), [(None, 20_000), (100.0, 10_000)])
def test_sil_state_rate_is_what_the_host_asks_for(tmp_path, state_rate_hz, period_us):
    """The host's HELLO asks for ``link.state_rate_hz`` (else the loop rate), so the key
    reaches the running virtual MCU rather than being reset by the handshake."""
    import contextlib

    pytest.importorskip("mujoco")
    from karakuri.launch.schema_links import LINKS
    from karakuri.robot.registry import load_robot

    link = {"kind": "sil"} if state_rate_hz is None else {"kind": "sil",
                                                          "state_rate_hz": state_rate_hz}
    cfg = load_launch(write(tmp_path, with_(link=link)))
    spec = load_robot(BASE["robot"])
    with contextlib.ExitStack() as stack:
        host, mcu = LINKS["sil"].open(cfg.link, spec, 50.0, stack, None)
        host.connect()
        stack.callback(host.close)
        assert host.caps.state_period_us == period_us
        assert mcu.core.state_period_s == pytest.approx(period_us * 1e-6)
