"""Fixtures for the ROS 2 tests: real DDS on loopback, isolated per run and per test.

Every test gets its own namespace (so topics never cross between tests, or with another
developer's run on the same machine), and the run gets one ROS domain id drawn from its pid.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator

import pytest

# DDS discovery stays on this host: before any ROS context exists.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

try:
    import rclpy  # noqa: F401
except ImportError as e:  # CI installs the ros2 extra and must run these tests
    if os.environ.get("CI"):
        raise
    pytest.skip(f"ROS 2 tests need the ros2 extra ({e})", allow_module_level=True)

_count = itertools.count()


def _wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``pred`` every 10 ms; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(pred, timeout, what)``: poll until true, else fail naming ``what``."""
    return _wait_until


@pytest.fixture
def ros_ns() -> str:
    """A namespace no other test or run uses, e.g. ``/kt12345_3``."""
    return f"/kt{os.getpid()}_{next(_count)}"


@pytest.fixture
def domain_id() -> int:
    """The ROS domain id of this run."""
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture
def make_sim(ros_ns: str, domain_id: int) -> Iterator[Callable[..., object]]:
    """Factory: start a simulated robot in a thread; every one is closed at teardown."""
    from karakuri.firmware_bridge.ros2_sim import Ros2SimConfig, Ros2SimRobot, SimFaults

    sims: list[Ros2SimRobot] = []

    def make(faults: SimFaults | None = None, **kw: object) -> Ros2SimRobot:
        kw.setdefault("namespace", ros_ns)
        kw.setdefault("domain_id", domain_id)
        sim = Ros2SimRobot(Ros2SimConfig(**kw), faults=faults)  # type: ignore[arg-type]
        sims.append(sim)
        return sim.start()

    yield make
    for sim in sims:
        sim.close()


@pytest.fixture
def make_link(ros_ns: str, domain_id: int) -> Iterator[Callable[..., object]]:
    """Factory: a connected Ros2Link for a spec; every one is closed at teardown."""
    from karakuri.firmware_bridge.ros2_link import Ros2Link, Ros2LinkConfig

    links: list[Ros2Link] = []

    def make(spec: object, connect: bool = True, control_period_s: float | None = None,
             **kw: object) -> Ros2Link:
        kw.setdefault("namespace", ros_ns)
        kw.setdefault("domain_id", domain_id)
        kw.setdefault("connect_timeout_s", 5.0)
        link = Ros2Link(spec, Ros2LinkConfig(**kw), control_period_s)  # type: ignore[arg-type]
        links.append(link)
        if connect:
            link.connect()
        return link

    yield make
    for link in links:
        link.close()
