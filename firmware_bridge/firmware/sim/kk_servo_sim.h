/* A simulated joint drive for boards without motors (the QEMU port): each joint is a rigid
 * inertia J with viscous damping b, driven by a PD servo with both feed-forwards inside the
 * effort clip,
 *     u = clip(kp (q_ref - q) + kd (v_ref - dq) + tau_ff, +-effort_limit),
 *     J ddq = u - b dq,
 * speed clipped to the velocity limit (rate- and effort-limited tracking), stepped with
 * semi-implicit Euler.  No gravity (the arm compensates it) and no coupling between joints.
 * Hard stops 0.05 (rad or m) outside the position limits. */
#ifndef KK_SERVO_SIM_H
#define KK_SERVO_SIM_H

#include <stdint.h>

#include "kk_core.h"

typedef struct {
    uint8_t n;
    float q[KK_MAX_JOINTS], dq[KK_MAX_JOINTS], effort[KK_MAX_JOINTS];
    float kp[KK_MAX_JOINTS], kd[KK_MAX_JOINTS], damping[KK_MAX_JOINTS], inertia[KK_MAX_JOINTS];
    float lower[KK_MAX_JOINTS], upper[KK_MAX_JOINTS];
    float velocity_limit[KK_MAX_JOINTS], effort_limit[KK_MAX_JOINTS];
    float peak_speed[KK_MAX_JOINTS]; /* fastest |dq| seen, for the tests */
} kk_servo_sim_t;

/* dt_s: step, s.  Applies the reference held since the last call for one step. */
void kk_servo_sim_step(kk_servo_sim_t *s, const float *q_ref, const float *v_ref,
                       const float *tau_ff, float dt_s);

#endif
