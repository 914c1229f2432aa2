"""The launch file's ``care:`` section and how a deploy attaches the care safety layers.

``care:`` turns on speed-and-separation monitoring and force limiting in the safety filter
(:mod:`karakuri.robot.care_safety`).  A policy trained for a task next to a person
(:data:`PERSON_TASKS`) is refused without the section, so the layers cannot be forgotten;
``care: {enabled: false}`` runs without them, with a warning in the log.  Numpy and the
standard library only: the layers run on the edge install.

Person sources: ``person.plant_site`` (sim-in-the-loop: a site of the simulated scene, read
every tick like a tracker, with Gaussian ``noise``).  On hardware the interface is a ROS 2
``geometry_msgs/PointStamped`` topic or a serial PERSON message (docs/control-loop.md); neither
is built yet, so a ``serial`` or ``ros2`` launch with separation on is refused with that fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
        plant_site: SIL: the simulated scene's site to read (e.g. ``ho_palm``, handover's palm).
        noise: Std of Gaussian noise on each reading, m (a tracker's error).
        seed: Seed of the noise.
    """

    plant_site: str = ""
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise: {self.noise} must be a number >= 0 m")


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
    person = None
    if care.separation is not None:
        if not care.person.plant_site:
            raise ValueError(f"{cfg.source}: care.person: no person source; give plant_site "
                             f"(sil), or set care.separation: null to run the force limit only "
                             f"(a ROS 2 topic and a serial message are documented, not built)")
        if plant is None:
            raise ValueError(f"{cfg.source}: care.person.plant_site needs link kind 'sil'")
        try:
            person = PlantPerson(plant, care.person.plant_site, care.person.noise,
                                 care.person.seed)
        except ValueError as e:
            raise ValueError(f"{cfg.source}: care.person.plant_site: {e}") from e
    else:
        log("WARNING: care.separation is off: the tool's speed near a person is not limited")
    if care.force_limit is None:
        log("WARNING: care.force_limit is off: contact forces are not limited")
    limits = safety.limits
    stage = CareSafety(spec.kinematics, 1.0 / rate_hz,
                       CareConfig(care.separation, care.force_limit), limits.lower,
                       limits.upper, person=person, state=link.latest_state)
    stage.bind(record=telemetry.record if telemetry is not None else None, log=log)
    safety.add_stage(stage)
    parts = []
    if care.separation is not None:
        parts.append(f"separation (min {stage.min_separation_m * 100:.1f} cm, "
                     f"{care.separation.reduced_speed} m/s within "
                     f"{care.separation.reduced_zone_m} m)")
    if care.force_limit is not None:
        parts.append(f"force limit ({care.force_limit.region}: stop over "
                     f"{care.force_limit.stop_n:g} N)")
    log(f"care safety: {' and '.join(parts)}")
    return stage
