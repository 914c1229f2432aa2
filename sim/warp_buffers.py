"""Per-world contact and constraint-row buffers for MuJoCo Warp, derived from the model.

``mujoco_warp`` allocates ``nconmax`` contacts and ``njmax`` constraint rows per world up
front; :func:`buffer_sizes` derives both from the compiled ``MjModel`` (C MuJoCo only, no warp
import), and ``KARAKURI_WARP_NCONMAX`` / ``KARAKURI_WARP_NJMAX`` or explicit values replace
the derived ones.  :class:`karakuri.sim.warp_backend.WarpPhysics` uses them and names the
same settings when a buffer overflows.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np

#: The environment variable that overrides each buffer size, for every command.
ENV = {"nconmax": "KARAKURI_WARP_NCONMAX", "njmax": "KARAKURI_WARP_NJMAX"}
#: Most contacts per colliding geom pair, by geom type (the larger of the two types decides).
_PAIR_CONTACTS = {
    mujoco.mjtGeom.mjGEOM_PLANE: 1,
    mujoco.mjtGeom.mjGEOM_SPHERE: 1,
    mujoco.mjtGeom.mjGEOM_CAPSULE: 2,
    mujoco.mjtGeom.mjGEOM_ELLIPSOID: 1,
    mujoco.mjtGeom.mjGEOM_CYLINDER: 4,
}
_PAIR_CONTACTS_OTHER = 8  # boxes (all 8 corners under a plane), meshes, height fields, SDFs
#: Per-world contact allowance never derived above this without an explicit setting.
NCONMAX_CAP = 256


def buffer_sizes(
    model: mujoco.MjModel, nconmax: int | None = None, njmax: int | None = None, probes: int = 16
) -> tuple[int, int]:
    """Contacts and constraint rows to allocate per world, derived from the model.

    ``nconmax`` bounds the contacts of every geom pair that may collide (contype/conaffinity,
    excluded and welded bodies filtered; per pair the larger of 1 for planes and spheres, 2 for
    capsules, 4 for cylinders, 8 for boxes, meshes and height fields), capped at
    :data:`NCONMAX_CAP`; where C MuJoCo finds more contacts than that at ``probes`` random
    poses within the joint ranges, twice that many.
    ``njmax`` is the equality and friction-loss rows, one row per limited joint or tendon, and
    the rows of ``nconmax`` contacts (``condim`` each for elliptic cones, ``2 (condim - 1)``
    for pyramidal).  An explicit value, else ``KARAKURI_WARP_NCONMAX`` / ``KARAKURI_WARP_NJMAX``,
    replaces the derived one.

    Returns:
        ``(nconmax, njmax)`` per world.
    """
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    static_rows = data.ne + data.nf + int(model.jnt_limited.sum()) + int(model.tendon_limited.sum())
    rng = np.random.default_rng(0)
    most = data.ncon
    for _ in range(probes):
        data.qpos[:] = model.qpos0
        for j in range(model.njnt):
            if model.jnt_limited[j] and model.jnt_type[j] in (2, 3):  # slide, hinge
                lo, hi = model.jnt_range[j]
                data.qpos[model.jnt_qposadr[j]] = rng.uniform(lo, hi)
        mujoco.mj_forward(model, data)
        most = max(most, data.ncon)
    derived_con = max(4, 2 * most, min(_pair_bound(model), NCONMAX_CAP))
    nconmax = _setting("nconmax", nconmax, derived_con)
    collide = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    condim = int(model.geom_condim[collide].max()) if collide.any() else 1
    elliptic = model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    per_contact = condim if elliptic or condim == 1 else 2 * (condim - 1)
    njmax = _setting("njmax", njmax, static_rows + per_contact * nconmax)
    return nconmax, njmax


def _setting(name: str, given: int | None, derived: int) -> int:
    if given is None and os.environ.get(ENV[name]):
        raw = os.environ[ENV[name]]
        try:
            given = int(raw)
        except ValueError:
            raise ValueError(f"{ENV[name]}={raw!r} is not a whole number") from None
    if given is not None and given < 1:
        raise ValueError(f"{name} must be >= 1, got {given}")
    return derived if given is None else given


def _pair_bound(model: mujoco.MjModel) -> int:
    """Sum over geom pairs that can collide of the most contacts each pair can make."""
    excluded = set(model.exclude_signature.tolist())
    weld = model.body_weldid
    total = 0
    for i in range(model.ngeom):
        for j in range(i + 1, model.ngeom):
            b1, b2 = model.geom_bodyid[i], model.geom_bodyid[j]
            if weld[b1] == weld[b2]:
                continue
            if not (model.geom_contype[i] & model.geom_conaffinity[j]) and not (
                model.geom_contype[j] & model.geom_conaffinity[i]
            ):
                continue
            if ((min(b1, b2) << 16) + max(b1, b2)) in excluded:
                continue
            t1, t2 = model.geom_type[i], model.geom_type[j]
            total += max(_PAIR_CONTACTS.get(t, _PAIR_CONTACTS_OTHER) for t in (t1, t2))
    return total + model.npair * _PAIR_CONTACTS_OTHER
