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


def read_mcap(path):
    """Topic and log time (ns) of every message, with the standard reader, in log-time order."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        reader = make_reader(f)
        return [(c.topic, m.log_time, json.loads(m.data)) for _, c, m in reader.iter_messages()]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def timing(i):
    return {"tick": i, "period_error_us": 1.0, "compute_us": 2.0, "late": 0, "missed": 0}


def test_mcap_opens_with_the_standard_reader_while_still_being_written(tmp_path):
    clock = FakeClock()
    path = tmp_path / "live.mcap"
    tel = McapTelemetry(path, clock=clock, flush_s=0.25)
    assert read_mcap(path) == []  # valid from the first moment: header, schemas, a footer
    for i in range(10):
        tel.record("/timing", timing(i), t=clock.t)
        clock.t += 0.02
        tel.drain()
    # 0.2 s since the start: nothing flushed yet, the file still opens.
    assert read_mcap(path) == [] and tel.flushes == 0
    for i in range(10, 20):
        tel.record("/timing", timing(i), t=clock.t)
        clock.t += 0.02
        tel.drain()
    msgs = read_mcap(path)  # 0.4 s: one flush, everything drained before it is in the file
    assert tel.flushes == 1 and [m["tick"] for _, _, m in msgs] == list(range(13))
    tel.close()
    msgs = read_mcap(path)
    assert [m["tick"] for _, _, m in msgs] == list(range(20))
    assert abs(msgs[-1][1] - (100.0 + 19 * 0.02) * 1e9) < 1e3  # log time: the sample time, ns


def test_a_closed_mcap_has_a_summary_with_an_index_and_statistics(tmp_path):
    from mcap.reader import make_reader

    clock = FakeClock()
    tel = McapTelemetry(tmp_path / "x.mcap", clock=clock, fsync=False)
    for i in range(30):
        tel.record("/timing", timing(i), t=clock.t)
        tel.record("/state", {"q": np.zeros(2), "dq": np.zeros(2), "effort": np.zeros(2),
                              "age_ms": 1.0, "status": 1, "seq": i}, t=clock.t)
        clock.t += 0.1
        tel.drain()
    tel.close()
    with open(tmp_path / "x.mcap", "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary.statistics.message_count == 60 and len(summary.chunk_indexes) >= 10
    assert {c.topic for c in summary.channels.values()} == set(CHANNELS)
    assert summary.statistics.message_start_time == int(100.0 * 1e9)
    assert len(read_mcap(tmp_path / "x.mcap")) == 60


_WRITER = """
import sys, time
import numpy as np
from karakuri.robot.telemetry import McapTelemetry
tel = McapTelemetry(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    t = time.monotonic()
    tel.record("/timing", {"tick": i, "period_error_us": 0.0, "compute_us": 0.0, "late": 0,
                           "missed": 0}, t)
    tel.drain(until=t + 0.004)
    i += 1
    time.sleep(max(0.0, t + 0.005 - time.monotonic()))
"""


def test_after_sigkill_the_standard_reader_opens_the_file_and_misses_under_a_second(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    t_kill = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=5)
    msgs = read_mcap(path)
    ticks = [m["tick"] for _, _, m in msgs]
    assert ticks == list(range(len(ticks))) and len(ticks) > 100  # nothing lost in between
    assert t_kill - msgs[-1][1] / 1e9 < 1.0  # CLOCK_MONOTONIC is shared by the processes
