"""The audit log: hash-chained JSON lines; ``karakuri audit verify`` names the first bad line
of a log with a record edited, removed or two swapped, and passes a log of real deploys."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from karakuri.launch.audit import GENESIS, AuditError, AuditLog, verify_log
from karakuri.launch.cli import main


def make_log(path: Path, n: int = 5) -> Path:
    book = AuditLog(path)
    for i in range(n):
        book.append("deploy_start" if i % 2 == 0 else "deploy_end",
                    {"deploy_id": f"d{i // 2}", "value": i, "limits": [0.5, float("inf")]})
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows))


def test_records_chain_and_verify(tmp_path):
    log = make_log(tmp_path / "a" / "audit.jsonl")
    recs = [json.loads(x) for x in lines(log)]
    assert [r["seq"] for r in recs] == [0, 1, 2, 3, 4]
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(recs))
    assert recs[0]["limits"] == [0.5, "inf"]  # JSON has no infinity
    rep = verify_log(log)
    assert rep.ok and rep.records == 5 and rep.head == recs[-1]["hash"]
    assert rep.open_deploys == ["d2"]  # started, never ended


def tamper_edit(rows: list[str]) -> int:
    rec = json.loads(rows[2])
    rec["value"] = 99
    rows[2] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    return 3


def tamper_remove(rows: list[str]) -> int:
    del rows[1]
    return 2


def tamper_swap(rows: list[str]) -> int:
    rows[2], rows[3] = rows[3], rows[2]
    return 3


@pytest.mark.parametrize(("tamper", "problem"), [(tamper_edit, "edited"),
                                                 (tamper_remove, "out of chain"),
                                                 (tamper_swap, "out of chain")])
def test_verify_names_the_first_bad_line(tmp_path, capsys, tamper, problem):
    log = make_log(tmp_path / "audit.jsonl")
    rows = lines(log)
    bad = tamper(rows)
    write(log, rows)
    rep = verify_log(log)
    assert rep.bad_line == bad and problem in rep.problem and rep.records == bad - 1
    assert main(["audit", "verify", str(log)]) == 1
    assert f"line {bad}: {problem}" in capsys.readouterr().err


def test_an_edited_record_with_its_hash_recomputed_breaks_the_next_line(tmp_path):
    from karakuri.launch.audit import canonical, record_hash

    log = make_log(tmp_path / "audit.jsonl")
    rows = lines(log)
    rec = json.loads(rows[1])
    rec["value"] = 42
    rec["hash"] = record_hash(rec)
    rows[1] = canonical(rec).decode()
    write(log, rows)
    assert verify_log(log).bad_line == 3


def test_removing_the_first_record_is_caught(tmp_path):
    log = make_log(tmp_path / "audit.jsonl")
    write(log, lines(log)[1:])
    assert verify_log(log).bad_line == 1


def test_head_detects_truncation(tmp_path, capsys):
    log = make_log(tmp_path / "audit.jsonl")
    head = verify_log(log).head
    assert main(["audit", "verify", str(log), "--head", head]) == 0
    write(log, lines(log)[:-1])  # the tail is cut: the chain alone cannot see it
    assert verify_log(log).ok
    assert main(["audit", "verify", str(log), "--head", head]) == 1
    assert "truncated" in capsys.readouterr().err


def test_append_refuses_to_continue_a_broken_tail(tmp_path):
    log = make_log(tmp_path / "audit.jsonl")
    with log.open("a") as f:
        f.write("garbage\n")
    with pytest.raises(AuditError, match="audit verify"):
        AuditLog(log).append("x", {})


def test_an_unwritable_log_refuses_the_deploy_before_the_robot(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("mujoco")
    from trust_helpers import hold_policy, launch_file

    from karakuri.launch.deploy import deploy
    from karakuri.launch.schema import LaunchError, load_launch

    hold_policy(tmp_path / "policy.onnx")
    (tmp_path / "blocker").write_text("a file, not a folder")
    cfg = load_launch(launch_file(tmp_path, {"kind": "sil"}, audit_log="blocker/audit.jsonl"))
    with pytest.raises(LaunchError, match="audit_log: audit log .* cannot be opened"):
        deploy(cfg, log=lambda s: None)


@pytest.mark.slow
def test_three_sil_deploys_make_a_log_that_verifies_and_any_tampering_is_named(tmp_path, capsys):
    """Three real deploys (sim-in-the-loop), then the three tamperings on that log."""
    pytest.importorskip("onnx")
    pytest.importorskip("mujoco")
    from trust_helpers import hold_policy, launch_file

    hold_policy(tmp_path / "policy.onnx")
    lf = launch_file(tmp_path, {"kind": "sil"}, telemetry="sil.mcap", operator="ana")
    for _ in range(3):
        assert main(["deploy", str(lf)]) in (0, 1)  # 1: a link fault on a loaded box
    log = tmp_path / "audit.jsonl"
    assert main(["audit", "verify", str(log)]) == 0
    assert "6 records verify" in capsys.readouterr().out
    recs = [json.loads(x) for x in lines(log)]
    assert [r["kind"] for r in recs] == ["deploy_start", "deploy_end"] * 3
    start, end = recs[0], recs[1]
    assert start["operator"] == "ana" and start["policy"]["trust"] == "unsigned"
    assert len(start["launch"]["sha256"]) == 64 and len(start["policy"]["sha256"]) == 64
    assert end["robot"]["name"] == "industrial_arm" and len(end["envelope"]["upper"]) == 7
    assert [e["event"] for e in end["events"]][:1] == ["arm"]
    assert end["summary"]["ticks"] > 0 and len(end["telemetry"]["sha256"]) == 64
    original = lines(log)
    for tamper, bad in ((tamper_edit, 3), (tamper_remove, 2), (tamper_swap, 3)):
        rows = list(original)
        tamper(rows)
        write(log, rows)
        assert main(["audit", "verify", str(log)]) == 1
        assert f"line {bad}:" in capsys.readouterr().err
