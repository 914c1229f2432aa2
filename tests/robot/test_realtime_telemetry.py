import gc
import json
import os

import numpy as np
import pytest

from karakuri.robot.realtime import RealtimeConfig, RealtimeSetup
from karakuri.robot.telemetry import CHANNELS, McapTelemetry


def test_realtime_reports_and_restores():
    was_enabled = gc.isenabled()
    with RealtimeSetup(RealtimeConfig(sched_fifo_priority=0, mlockall=False)) as report:
        assert not gc.isenabled()
        line = report.line()
    assert gc.isenabled() == was_enabled
    assert line.startswith("realtime: applied gc.freeze")
    assert "not asked" in line and "sched_fifo" in line


def test_realtime_refusal_is_reported_not_raised(monkeypatch):
    def refuse(*a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with RealtimeSetup(RealtimeConfig(sched_fifo_priority=50, mlockall=False,
                                      cpus=(sorted(os.sched_getaffinity(0))[0],))) as report:
        pass
    line = report.line()
    assert "refused sched_fifo" in line and "CAP_SYS_NICE" in line
    assert "affinity" in line.split("refused")[0]


def test_realtime_config_checks():
    with pytest.raises(ValueError, match=r"0\.\.99"):
        RealtimeConfig(sched_fifo_priority=120)


def test_mcap_round_trip(tmp_path):
    from mcap.reader import make_reader

    path = tmp_path / "sub" / "run.mcap"
    tel = McapTelemetry(path)
    for i in range(5):
        tel.record("/state", {"q": np.arange(3.0) + i, "dq": np.zeros(3), "effort": np.zeros(3),
                              "age_ms": 1.5, "status": 1, "seq": i}, t=1.0 + i * 0.01)
        tel.record("/timing", {"tick": i, "period_error_us": np.float64(3.0), "compute_us": 9.0,
                               "late": 0, "missed": 0}, t=1.0 + i * 0.01)
    assert tel.drain(until=0.0) == 0  # budget already spent: nothing written
    tel.close()
    with open(path, "rb") as f:
        reader = make_reader(f)
        topics = {c.topic for c in reader.get_summary().channels.values()}
        schemas = {s.encoding for s in reader.get_summary().schemas.values()}
        msgs = [(c.topic, json.loads(m.data)) for _, c, m in reader.iter_messages()]
    assert topics == set(CHANNELS) and schemas == {"jsonschema"}
    states = [m for t, m in msgs if t == "/state"]
    assert len(states) == 5 and states[2]["q"] == [2.0, 3.0, 4.0]


def test_unknown_topic_names_the_valid_ones(tmp_path):
    with McapTelemetry(tmp_path / "x.mcap") as tel, pytest.raises(KeyError, match="/state"):
        tel.record("/nope", {})
