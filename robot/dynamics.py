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

    def _bodies(self, q: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray,
                                                   float]]:
        """Per massive body: mass, COM and angular Jacobians, inertia, gravcomp.

        The Jacobians have shape (3, n); the inertia is about the COM in the world frame (3, 3).
        """
        joints: list = []
        frames: list = []
        self.chain._walk(np.asarray(q, np.float64), joints, frames)
        out = []
        for k, ((pos, mat, count), m) in enumerate(zip(frames, self._mass, strict=True)):
            if m <= 0:
                continue
            rot = np.array(mat).reshape(3, 3)
            com = np.array(pos) + rot @ self._com[k]
            jv, jw = np.zeros((3, self.n)), np.zeros((3, self.n))
            for index, hinge, axis, anchor in joints[:count]:
                a = np.array(axis)
                if hinge:
                    jv[:, index] += np.cross(a, com - np.array(anchor))
                    jw[:, index] += a
                else:
                    jv[:, index] += a
            out.append((float(m), jv, jw, rot @ self._inertia[k] @ rot.T, float(self._gc[k])))
        return out

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        """``M(q)``, armature included, kg·m² (kg for slides). Shape: (n, n)."""
        mm = np.diag(self.chain.armature)
        for m, jv, jw, inertia, _ in self._bodies(q):
            mm += m * jv.T @ jv + jw.T @ inertia @ jw
        return mm

    def coriolis(self, q: np.ndarray, dq: np.ndarray) -> np.ndarray:
        """``c(q, q̇)``: Coriolis and centrifugal torques, N·m. Shape: (n,)."""
        q, dq = np.asarray(q, np.float64), np.asarray(dq, np.float64)
        eps = 1e-6 / max(1.0, float(np.abs(dq).max(initial=0.0)))
        ahead, behind = self._bodies(q + eps * dq), self._bodies(q - eps * dq)
        tau = np.zeros(self.n)
        for (m, jv, jw, inertia, _), a, b in zip(self._bodies(q), ahead, behind, strict=True):
            acc = (a[1] - b[1]) @ dq / (2 * eps)  # J̇v q̇: the COM's velocity-product accel.
            alpha = (a[2] - b[2]) @ dq / (2 * eps)
            omega = jw @ dq
            tau += m * jv.T @ acc + jw.T @ (inertia @ alpha + np.cross(omega, inertia @ omega))
        return tau

    def gravity(self, q: np.ndarray, compensated: bool = False) -> np.ndarray:
        """``g(q)``, gravity torques, N·m. Shape: (n,).

        ``compensated``: only the part the controller takes (each body's ``gravcomp``
        fraction: MuJoCo's ``qfrc_gravcomp``).
        """
        tau = np.zeros(self.n)
        for m, jv, _, _, gc in self._bodies(q):
            tau -= (gc if compensated else 1.0) * m * jv.T @ self.chain.gravity
        return tau

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
        return (tau + self.mass_matrix(q) @ ddq + self.coriolis(q, dq)
                + self.gravity(q) - self.gravity(q, compensated=True))
