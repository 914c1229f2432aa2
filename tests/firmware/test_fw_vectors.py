"""The C core against the shared test vectors (firmware_bridge/vectors/wire_vectors.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fw_harness import FIRMWARE, Harness, f32hex, hexf32

VECTORS = json.loads((FIRMWARE.parent / "vectors" / "wire_vectors.json").read_text())
FRAMES = {v["name"]: v for v in VECTORS["frames"]}
MCU_SENT = ("CAPS", "STATE", "FAULT", "ACK")


def test_crc32_check_value(harness: Harness) -> None:
    check = VECTORS["crc32_check"]
    assert int(harness.ask(f"CRC {check['input_ascii'].encode().hex()}"), 16) == int(
        check["crc32"], 16)


@pytest.mark.parametrize("vec", VECTORS["cobs"], ids=lambda v: f"{len(v['raw_hex']) // 2}B")
def test_cobs_vectors(harness: Harness, vec: dict[str, str]) -> None:
    assert harness.ask(f"COBSE {vec['raw_hex'] or '-'}") == vec["stuffed_hex"]
    assert harness.ask(f"COBSD {vec['stuffed_hex']}") == vec["raw_hex"]


def _encode_cmd(msg: dict) -> str:
    f, head = msg["fields"], f"{msg['type']} {msg['seq']} {msg['time_us']}"
    if msg["type"] == "CAPS":
        arrays = " ".join(f32hex(f[k]) for k in ("lower", "upper", "velocity_limit",
                                                   "effort_limit"))
        return (f"{head} {f['n_joints']} {f['joint_hash']} {f['servo_period_us']} "
                f"{f['command_period_us']} {f['state_period_us']} {f['watchdog_us']} {arrays}")
    if msg["type"] == "STATE":
        arrays = " ".join(f32hex(f[k]) for k in ("q", "dq", "effort"))
        return f"{head} {f['status']} {f['n_joints']} {f['last_cmd_seq']} {arrays}"
    if msg["type"] == "FAULT":
        return f"{head} {f['code']} {f['fault_id']} {f['detail']}"
    return f"{head} {f['acked_type']} {f['acked_seq']} {f['result']}"


@pytest.mark.parametrize("name", [n for n, v in FRAMES.items()
                                  if v["message"]["type"] in MCU_SENT])
def test_c_encoders_match_vectors(harness: Harness, name: str) -> None:
    vec = FRAMES[name]
    assert harness.ask(_encode_cmd(vec["message"])) == vec["frame_hex"]


@pytest.mark.parametrize("name", list(FRAMES))
def test_c_decoder_reads_every_vector(harness: Harness, name: str) -> None:
    vec = FRAMES[name]
    msg, f = vec["message"], vec["message"]["fields"]
    words = harness.ask(f"DEC {vec['frame_hex'][:-2]}").split()
    assert words[0] == "OK", words
    assert [int(w) for w in words[2:4]] == [msg["seq"], msg["time_us"]]
    rest = words[4:]
    if msg["type"] == "HELLO":
        assert [int(w) for w in rest] == [f["command_period_us"], f["state_period_us"]]
    elif msg["type"] == "ARM":
        assert [int(w) for w in rest] == [f["arm_id"]]
    elif msg["type"] == "COMMAND":
        assert [int(w) for w in rest[:3]] == [f["mode"], f["flags"], f["n_joints"]]
        for key, hexed in zip(("q_target", "velocity", "effort"), rest[3:], strict=True):
            if key not in f:
                assert hexed == "-"
                continue
            got = np.frombuffer(bytes.fromhex(hexed), "<f4")
            np.testing.assert_array_equal(got, np.array(f[key], np.float32))
    else:
        payload = bytes.fromhex(vec["payload_hex"])
        assert rest in ([payload[8:-4].hex()], [])


@pytest.mark.parametrize("vec", VECTORS["invalid_frames"], ids=lambda v: v["name"])
def test_c_decoder_counts_invalid_vectors_under_the_named_error(harness: Harness,
                                                                vec: dict[str, str]) -> None:
    stuffed = vec["frame_hex"][:-2] if vec["frame_hex"].endswith("00") else vec["frame_hex"]
    assert harness.ask(f"DEC {stuffed}") == f"ERR {vec['error']}"


def test_every_single_bit_flip_is_dropped(harness: Harness) -> None:
    checked = 0
    for vec in FRAMES.values():
        frame = bytes.fromhex(vec["frame_hex"])[:-1]
        for bit in range(8 * len(frame)):
            bad = bytearray(frame)
            bad[bit // 8] ^= 1 << (bit % 8)
            answer = harness.ask(f"DEC {bad.hex()}")
            assert answer.startswith("ERR"), (vec["name"], bit, answer)
            checked += 1
    assert checked > 2000


def test_board_header_is_the_industrial_arm_spec() -> None:
    from karakuri.robot.registry import load_robot

    spec = load_robot("industrial_arm")
    text = (FIRMWARE / "boards" / "industrial_arm.h").read_text()

    def macro(name: str) -> str:
        m = re.search(rf"#define KK_ROBOT_{name} (.+)", text)
        assert m, name
        return m.group(1)

    def floats(name: str) -> np.ndarray:
        return np.array([float(x.rstrip("f")) for x in macro(name).strip("{}").split(",")])

    assert int(macro("N")) == spec.n_joints
    assert int(macro("JOINT_HASH").rstrip("u"), 16) == spec.joint_hash()
    for name, want in (("LOWER", spec.lower), ("UPPER", spec.upper),
                       ("VELOCITY", spec.velocity_limit), ("EFFORT", spec.effort_limit),
                       ("STOP_DECEL", spec.accel_limit), ("HOME", spec.default_pose),
                       ("KP", spec.kp), ("KD", spec.kd)):
        np.testing.assert_array_equal(floats(name).astype(np.float32),
                                      np.asarray(want).astype(np.float32), err_msg=name)


def test_power_on_self_test_passes_on_the_host_build(harness: Harness) -> None:
    n = 3
    assert harness.init(1000, 4000, 0x1234, np.full(n, -1.0), np.full(n, 1.0), np.full(n, 2.0),
                        np.full(n, 10.0), np.full(n, 5.0), np.zeros(n)) == 0
    assert harness.ask("SELFTEST") == "0"


def test_hexf32_round_trip() -> None:
    v = np.array([0.5, -3.0, np.inf], np.float32)
    np.testing.assert_array_equal(hexf32(f32hex(v).split()), v)


def test_host_build_is_warning_clean_and_sanitized(harness_bin: Path) -> None:
    makefile = (FIRMWARE / "Makefile").read_text()
    assert "-Werror" in makefile and "-fsanitize=address,undefined" in makefile
    assert harness_bin.stat().st_size > 0
