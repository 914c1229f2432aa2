"""The robots Karakuri ships, by name, and :func:`load_robot` for names or sidecar paths.

Reading a spec from its files needs MuJoCo (to compile the model).  The edge runtime reads
the sidecar alone where MuJoCo is absent (:func:`karakuri.robot.envelope.load_description`);
a policy file's own spec is never a source of limits.
"""

from __future__ import annotations

from pathlib import Path

from karakuri.robot.spec import RobotSpec, RobotSpecError

DESCRIPTIONS = Path(__file__).resolve().parent / "descriptions"

# Robot name -> sidecar YAML.
ROBOTS: dict[str, Path] = {
    "industrial_arm": DESCRIPTIONS / "industrial_arm" / "industrial_arm.yaml",
    "care_arm": DESCRIPTIONS / "care_arm" / "care_arm.yaml",
}


def load_robot(name_or_path: str | Path) -> RobotSpec:
    """The spec of a registered robot, or of a sidecar YAML given by path.

    Raises:
        RobotSpecError: unknown name (the message lists the valid ones) or a bad sidecar.
    """
    from karakuri.robot.loader import spec_from_files

    key = str(name_or_path)
    if key in ROBOTS:
        return spec_from_files(ROBOTS[key])
    path = Path(key)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return spec_from_files(path)
    if path.suffix in (".yaml", ".yml"):
        raise RobotSpecError(f"sidecar {path} does not exist (resolved: {path.resolve()})")
    raise RobotSpecError(
        f"unknown robot {key!r}; registered robots: {sorted(ROBOTS)}; a robot of your own is "
        f"named by its sidecar: give the path of its .yaml (e.g. --robot path/to/{key}.yaml)"
    )
