"""Rigid-body dynamics of a robot's kinematic chain in numpy: no MuJoCo on the edge box.

The chain (:class:`~karakuri.robot.kinematics.KinematicChain`) carries each body's mass,
centre of mass and inertia (with the bodies it carries off the chain, a gripper's fingers,
lumped in at their reference pose), read off the MJCF by the loader.  From them:

- ``M(q)``: the joint-space inertia matrix, ``sum_i m_i Jv_iᵀ Jv_i + Jw_iᵀ I_i Jw_i`` plus the
  joints' armature on the diagonal (MuJoCo's ``mj_fullM``);
- ``c(q, q̇)``: Coriolis and centrifugal torques, ``sum_i m_i Jv_iᵀ (J̇v_i q̇) + Jw_iᵀ (I_i J̇w_i q̇
  + ω_i × I_i ω_i)`` (``J̇ q̇`` analytically, from the same walk of the chain);
- ``g(q)``: gravity torques, ``-sum_i m_i Jv_iᵀ g``; ``c + g`` is MuJoCo's ``qfrc_bias``, and
  the compensated part ``gravcomp_i`` of it its ``qfrc_gravcomp``.

``Jv_i`` is the Jacobian of body ``i``'s centre of mass, ``Jw_i`` its angular Jacobian, ``I_i``
its inertia about the centre in the world frame.  Checked against MuJoCo on random states
(``tests/robot/test_dynamics.py``: 1e-6 relative).  Frames: world (the MJCF's ``worldbody``);
joint vectors in the spec's order, length ``n_joints``; entries of joints off the chain are 0.
"""

from __future__ import annotations

import numpy as np

from karakuri.robot.kinematics import KinematicChain

#: Velocity scale of the smooth dry friction ``frictionloss tanh(q̇ / v)``, rad/s.
FRICTION_VELOCITY = 0.01


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis, broadcast (``np.cross`` costs ~10x more here)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


class ChainDynamics:
    """``M(q)``, ``c(q, q̇)``, ``g(q)`` and the servo effort a free motion needs.

    Args:
        chain: A chain with inertia (``chain.bodies[i].mass``); :attr:`known` says if any.
    """

    def __init__(self, chain: KinematicChain) -> None:
        self.chain, self.n = chain, chain.n_joints
        self._mass = np.array([b.mass for b in chain.bodies])
        self._com = np.array([b.com for b in chain.bodies])
        self._gc = np.array([b.gravcomp for b in chain.bodies])
        self._inertia = np.array([[[i[0], i[3], i[4]], [i[3], i[1], i[5]], [i[4], i[5], i[2]]]
                                  for i in (b.inertia for b in chain.bodies)])
        self.known = bool(np.any(self._mass > 0))

    def _bodies(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              np.ndarray]:
        """Mass, Jacobians, inertia and gravcomp of each massive body ``b``.

        Shapes: mass (b,), COM Jacobians (b, 3, n), angular Jacobians (b, 3, n), inertias
        about the COM in the world frame (b, 3, 3), gravcomp (b,).
        """
        joints: list = []
        frames: list = []
        self.chain._walk(np.asarray(q, np.float64), joints, frames)
        keep = self._mass > 0
        rot = np.array([f[1] for f in frames]).reshape(-1, 3, 3)[keep]
        com = np.array([f[0] for f in frames])[keep] + np.einsum("bij,bj->bi", rot,
                                                                  self._com[keep])
        count = np.array([f[2] for f in frames])[keep]
        nb, nj = len(com), len(joints)
        jv, jw = np.zeros((nb, 3, self.n)), np.zeros((nb, 3, self.n))
        index = np.array([j[0] for j in joints], np.int64)
        hinge = np.array([j[1] for j in joints], bool)
        axes = np.array([j[2] for j in joints]).reshape(nj, 3)
        anchors = np.array([j[3] for j in joints]).reshape(nj, 3)
        self._last = (com, count, index, hinge, axes, anchors)
        if nj:
            before = np.arange(nj)[None, :] < count[:, None]  # (b, k): joint k moves body b
            lin = np.where(hinge[None, :, None],
                           _cross(axes[None], com[:, None] - anchors[None]), axes[None])
            ang = np.where(hinge[None, :, None], axes[None], 0.0)
            lin, ang = lin * before[..., None], ang * before[..., None]  # (b, k, 3)
            jv[:, :, index] = lin.transpose(0, 2, 1)  # the chain's joint indices are distinct
            jw[:, :, index] = ang.transpose(0, 2, 1)
        inertia = rot @ self._inertia[keep] @ rot.transpose(0, 2, 1)
        return self._mass[keep], jv, jw, inertia, self._gc[keep]

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        """``M(q)``, armature included, kg·m² (kg for slides). Shape: (n, n)."""
        m, jv, jw, inertia, _ = self._bodies(q)
        return (np.diag(self.chain.armature) + np.einsum("b,bin,bim->nm", m, jv, jv)
                + np.einsum("bin,bij,bjm->nm", jw, inertia, jw))

    def coriolis(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """``c(q, q̇)``: Coriolis and centrifugal torques, N·m. Shape: (n,)."""
        return self._coriolis(self._bodies(q), q, dq)

    def _coriolis(self, bodies: tuple, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """``c`` from the body terms of ``_bodies(q)`` (called just before: its joint frames).

        ``J̇ q̇`` analytically: a joint's world axis turns with the joints before it,
        ``ȧ_k = ω_k⁻ × a_k``; a hinge column ``a_k × (c − p_k)`` changes by
        ``ȧ_k × (c − p_k) + a_k × (ċ − ṗ_k)``, its anchor ``p_k`` moving with the joints before.
        """
        dq = np.asarray(dq, np.float64)
        m, jv, jw, inertia, _ = bodies
        com, count, index, hinge, axes, anchors = self._last
        nj = len(index)
        rate = dq[index] if nj else np.zeros(0)  # (k,)
        lower = np.tri(nj, k=-1, dtype=bool)  # [k, j]: joint j comes before joint k
        spin = np.where(hinge[:, None], axes, 0.0) * rate[:, None]  # (k, 3): a_j q̇_j of hinges
        omega_before = lower.astype(np.float64) @ spin  # (k, 3)
        axis_rate = _cross(omega_before, axes)  # ȧ_k
        lever = anchors[:, None, :] - anchors[None, :, :]  # [k, j]: p_k − p_j
        point = np.where(hinge[None, :, None], _cross(axes[None, :, :], lever), axes[None])
        anchor_vel = np.einsum("kj,kji,j->ki", lower, point, rate)  # ṗ_k
        vel = jv @ dq  # ċ per body (b, 3)
        rel = com[:, None, :] - anchors[None, :, :]  # (b, k, 3)
        col = np.where(hinge[None, :, None],
                       _cross(axis_rate[None], rel)
                       + _cross(axes[None], vel[:, None, :] - anchor_vel[None]),
                       axis_rate[None])
        moves = np.arange(nj)[None, :] < count[:, None]  # (b, k)
        acc = np.einsum("bk,bki,k->bi", moves, col, rate)  # J̇v q̇ per body (b, 3)
        alpha = np.einsum("bk,k,ki,k->bi", moves, hinge.astype(np.float64), axis_rate, rate)
        omega = jw @ dq
        i_omega = np.einsum("bij,bj->bi", inertia, omega)
        moment = np.einsum("bij,bj->bi", inertia, alpha) + _cross(omega, i_omega)
        return np.einsum("b,bin,bi->n", m, jv, acc) + np.einsum("bin,bi->n", jw, moment)

    def gravity(self, q: np.ndarray, compensated: bool = False) -> np.ndarray:
        """``g(q)``, gravity torques, N·m. Shape: (n,).

        ``compensated``: only the part the controller takes (each body's ``gravcomp``
        fraction: MuJoCo's ``qfrc_gravcomp``).
        """
        return self._gravity(self._bodies(q), compensated)

    def _gravity(self, bodies: tuple, compensated: bool) -> np.ndarray:
        m, jv, _, _, gc = bodies
        w = m * gc if compensated else m
        return -np.einsum("b,bin,i->n", w, jv, self.chain.gravity)

    def expected_effort(self, q: np.ndarray, dq: np.ndarray, ddq: np.ndarray) -> np.ndarray:
        """The servo effort a free motion through ``(q, q̇, q̈)`` needs, N·m. Shape: (n,).

        ``M q̈ + c + g − g_compensated + damping q̇ + frictionloss tanh(q̇ / 0.01)``: the
        controller's gravity compensation is not part of the measured effort (MuJoCo's
        ``actuator_force`` excludes ``qfrc_gravcomp``; a real arm reports its servo torque).
        """
        ch = self.chain
        dq = np.asarray(dq, np.float64)
        tau = ch.damping * dq + ch.frictionloss * np.tanh(dq / FRICTION_VELOCITY)
        if not self.known:
            return tau + ch.armature * np.asarray(ddq, np.float64)
        bodies = self._bodies(q)
        m, jv, jw, inertia, _ = bodies
        mass = (np.diag(ch.armature) + np.einsum("b,bin,bim->nm", m, jv, jv)
                + np.einsum("bin,bij,bjm->nm", jw, inertia, jw))
        return (tau + mass @ ddq + self._coriolis(bodies, q, dq)
                + self._gravity(bodies, False) - self._gravity(bodies, True))
