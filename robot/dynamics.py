"""Rigid-body dynamics of a robot's kinematic chain in numpy: no MuJoCo on the edge box.

The chain (:class:`~karakuri.robot.kinematics.KinematicChain`) carries each body's mass,
centre of mass and inertia (with the bodies it carries off the chain, a gripper's fingers,
lumped in at their reference pose), read off the MJCF by the loader.  From them:

- ``M(q)``: the joint-space inertia matrix, ``sum_i m_i Jv_iᵀ Jv_i + Jw_iᵀ I_i Jw_i`` plus the
  joints' armature on the diagonal (MuJoCo's ``mj_fullM``);
- ``c(q, q̇)``: Coriolis and centrifugal torques, ``sum_i m_i Jv_iᵀ (J̇v_i q̇) + Jw_iᵀ (I_i J̇w_i q̇
  + ω_i × I_i ω_i)`` (``J̇ q̇`` by a central difference of the body Jacobians along ``q̇``);
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
        if nj:
            index = np.array([j[0] for j in joints])
            hinge = np.array([j[1] for j in joints], bool)
            axes, anchors = np.array([j[2] for j in joints]), np.array([j[3] for j in joints])
            before = np.arange(nj)[None, :] < count[:, None]  # (b, k): joint k moves body b
            lin = np.where(hinge[None, :, None],
                           np.cross(axes[None], com[:, None] - anchors[None]), axes[None])
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
        q, dq = np.asarray(q, np.float64), np.asarray(dq, np.float64)
        eps = 1e-6 / max(1.0, float(np.abs(dq).max(initial=0.0)))
        m, jv, jw, inertia, _ = bodies
        ahead, behind = self._bodies(q + eps * dq), self._bodies(q - eps * dq)
        acc = (ahead[1] - behind[1]) @ dq / (2 * eps)  # J̇v q̇ per body (b, 3)
        alpha = (ahead[2] - behind[2]) @ dq / (2 * eps)
        omega = jw @ dq
        i_omega = np.einsum("bij,bj->bi", inertia, omega)
        moment = np.einsum("bij,bj->bi", inertia, alpha) + np.cross(omega, i_omega)
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
