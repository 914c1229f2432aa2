"""The launch file's ``care:`` section and how a deploy attaches the care safety layers.

``care:`` turns on speed-and-separation monitoring and force limiting in the safety filter
(:mod:`karakuri.robot.care_safety`).  A policy trained for a task next to a person
(:data:`PERSON_TASKS`) is refused without the section, so the layers cannot be forgotten;
``care: {enabled: false}`` runs without them, with a warning in the log.  Numpy and the
standard library only: the layers run on the edge install.

Person sources (``person.source``): ``plant`` (sim-in-the-loop: ``plant_site``, a site of the
simulated scene, read every tick like a tracker, with Gaussian ``noise``) or ``ros2`` (a
``geometry_msgs/PointStamped`` topic, :mod:`karakuri.firmware_bridge.ros2_person`; any link
kind).  A serial PERSON message is not built.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from karakuri.robot.care_safety import CareConfig, CareSafety
from karakuri.robot.force_limit import ForceLimitConfig
from karakuri.robot.ssm import SeparationParams

if TYPE_CHECKING:
    from karakuri.launch.schema import LaunchConfig
    from karakuri.robot.safety import SafetyFilter
    from karakuri.robot.spec import RobotSpec

#: Tasks whose policies work next to a person: their launch files need a ``care`` section.
PERSON_TASKS = ("handover",)


@dataclass(frozen=True)
class PersonSection:
    """``care.person``: where the person's position comes from.

    Attributes:
        source: ``plant`` (SIL: ``plant_site``) or ``ros2`` (``topic``).
        plant_site: SIL: the simulated scene's site to read (e.g. ``ho_palm``, handover's palm).
        noise: Std of Gaussian noise on each reading, m (a tracker's error).
        seed: Seed of the noise.
        topic: ros2: the ``geometry_msgs/PointStamped`` topic.
        frame_id: ros2: the robot's base frame (the chain's world); other frames are dropped.
        domain_id: ros2: ROS domain id; None: ``ROS_DOMAIN_ID``.
        max_age_s: If given, replaces ``separation.max_age_s``: a position older than this
            (by its stamp), or none, puts the person at the tool, s.
    """

    source: Literal["plant", "ros2"] = "plant"
    plant_site: str = ""
    noise: float = 0.0
    seed: int = 0
    topic: str = "/person/position"
    frame_id: str = "world"
    domain_id: int | None = None
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise: {self.noise} must be a number >= 0 m")
        if self.max_age_s is not None and not (np.isfinite(self.max_age_s)
                                               and self.max_age_s > 0):
            raise ValueError(f"max_age_s: {self.max_age_s} must be a number > 0 s")
        if self.source == "ros2" and not (self.topic and self.frame_id):
            raise ValueError(f"source ros2 needs a topic and a frame_id (got topic "
                             f"{self.topic!r}, frame_id {self.frame_id!r})")


@dataclass(frozen=True)
class CareSection:
    """``care:``: the care safety layers (docs/control-loop.md, "Care safety").

    Attributes:
        enabled: False runs without both layers (warned).
        separation: Speed-and-separation parameters (:class:`SeparationParams`); null: off.
        force_limit: Force-limit settings (:class:`ForceLimitConfig`); null: off.
        person: The person source.
    """

    enabled: bool = True
    separation: SeparationParams | None = field(default_factory=SeparationParams)
    force_limit: ForceLimitConfig | None = field(default_factory=ForceLimitConfig)
    person: PersonSection = field(default_factory=PersonSection)


class PlantPerson:
    """A person tracker simulated from the SIL plant: a site's position, plus noise.

    Args:
        plant: The virtual MCU (its ``plant_call`` reads the scene between physics steps).
        site: Site name in the simulated scene.
        noise: Std of the Gaussian noise, m.
        seed: Noise seed.
    """

    def __init__(self, plant: Any, site: str, noise: float = 0.0, seed: int = 0) -> None:
        def site_id(model: Any, data: Any) -> int:
            names = [model.site(i).name for i in range(model.nsite)]
            return names.index(site) if site in names else -1

        self._id = plant.plant_call(site_id)
        if self._id < 0:
            raise ValueError(f"the simulated scene has no site {site!r}")
        self._plant, self._noise = plant, noise
        self._rng = np.random.default_rng(seed)

    def read(self) -> tuple[np.ndarray, float]:
        """The site's position now, m, world frame, and the time of the reading, s."""
        import time

        p = self._plant.plant_call(lambda m, d: d.site_xpos[self._id].copy())
        if self._noise > 0:
            p = p + self._rng.normal(0.0, self._noise, 3)
        return p, time.monotonic()


def attach_care(cfg: LaunchConfig, spec: RobotSpec, rate_hz: float, safety: SafetyFilter,
                policy: Any, link: Any, plant: Any, telemetry: Any,
                log: Callable[[str], None]) -> CareSafety | None:
    """Add the care stage to ``safety`` as ``cfg.care`` says (before the robot is armed).

    Raises:
        ValueError: the section is missing for a person task, the robot has no kinematic
            chain, or no person source fits the link; the message names the key and the fix.
    """
    care: CareSection | None = getattr(cfg, "care", None)
    task = getattr(getattr(policy, "metadata", None), "task", "") or cfg.task
    if care is None:
        if task in PERSON_TASKS:
            raise ValueError(f"{cfg.source}: care: missing; the policy was trained for "
                             f"{task!r}, next to a person: add a care section (see "
                             f"launch/handover_sil.yaml), or 'care: {{enabled: false}}' to run "
                             f"without speed-and-separation and force limits (warned)")
        return None
    if not care.enabled or (care.separation is None and care.force_limit is None):
        log("WARNING: care safety is OFF (care.enabled: false): nothing limits the tool's "
            "speed near a person or its contact force; never run this next to a person")
        return None
    if spec.kinematics is None:
        raise ValueError(f"{cfg.source}: care: robot {spec.name!r} has no kinematic chain (its "
                         f"tool site and the joints to it); the care layers need one")
    person: Any = None
    separation = care.separation
    if separation is not None:
        person = _person_source(cfg, care.person, plant, log)
        if care.person.max_age_s is not None:
            separation = dataclasses.replace(separation, max_age_s=care.person.max_age_s)
    else:
        log("WARNING: care.separation is off: the tool's speed near a person is not limited")
    if care.force_limit is None:
        log("WARNING: care.force_limit is off: contact forces are not limited")
    limits = safety.limits
    stage = CareSafety(spec.kinematics, 1.0 / rate_hz,
                       CareConfig(separation, care.force_limit), limits.lower,
                       limits.upper, person=person, state=link.latest_state)
    if hasattr(person, "close"):  # the ROS 2 node ends with the stage (or the process)
        weakref.finalize(stage, person.close)
    stage.bind(record=telemetry.record if telemetry is not None else None, log=log)
    safety.add_stage(stage)
    parts = []
    if separation is not None:
        parts.append(f"separation (min {stage.min_separation_m * 100:.1f} cm, "
                     f"{separation.reduced_speed} m/s within {separation.reduced_zone_m} m; "
                     f"person from {_describe_person(care.person)}, stale after "
                     f"{separation.max_age_s:g} s)")
    if care.force_limit is not None:
        parts.append(f"force limit ({care.force_limit.region}: stop over "
                     f"{care.force_limit.stop_n:g} N)")
    log(f"care safety: {' and '.join(parts)}")
    return stage


def _person_source(cfg: LaunchConfig, sec: PersonSection, plant: Any,
                   log: Callable[[str], None]) -> Any:
    """The :class:`~karakuri.robot.care_safety.PersonSource` ``care.person`` names."""
    if sec.source == "ros2":
        try:
            from karakuri.firmware_bridge.ros2_person import Ros2Person
        except ImportError as e:
            raise ValueError(f"{cfg.source}: care.person.source ros2: {e}") from e
        return Ros2Person(sec.topic, sec.frame_id, sec.domain_id, log=log)
    if not sec.plant_site:
        raise ValueError(f"{cfg.source}: care.person: no person source; give plant_site "
                         f"(sil) or source: ros2 with a topic, or set care.separation: null "
                         f"to run the force limit only (a serial message is not built)")
    if plant is None:
        raise ValueError(f"{cfg.source}: care.person.plant_site needs link kind 'sil'; on "
                         f"hardware use care.person.source: ros2")
    try:
        return PlantPerson(plant, sec.plant_site, sec.noise, sec.seed)
    except ValueError as e:
        raise ValueError(f"{cfg.source}: care.person.plant_site: {e}") from e


def _describe_person(sec: PersonSection) -> str:
    if sec.source == "ros2":
        return f"ROS 2 {sec.topic} (frame {sec.frame_id!r})"
    return f"the plant's site {sec.plant_site!r}"
