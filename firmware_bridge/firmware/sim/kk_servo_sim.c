/* Simulated joint drive: see kk_servo_sim.h. */
#include "kk_servo_sim.h"

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

void kk_servo_sim_step(kk_servo_sim_t *s, const float *q_ref, const float *v_ref,
                       const float *tau_ff, float dt_s) {
    for (uint8_t i = 0; i < s->n; i++) {
        float u = s->kp[i] * (q_ref[i] - s->q[i]) + s->kd[i] * (v_ref[i] - s->dq[i]) + tau_ff[i];
        u = clampf(u, -s->effort_limit[i], s->effort_limit[i]); /* feed-forward included */
        float dq = s->dq[i] + (u - s->damping[i] * s->dq[i]) / s->inertia[i] * dt_s;
        dq = clampf(dq, -s->velocity_limit[i], s->velocity_limit[i]);
        float q = s->q[i] + dq * dt_s;
        float lo = s->lower[i] - 0.05f, hi = s->upper[i] + 0.05f;
        if (q < lo || q > hi) {
            q = clampf(q, lo, hi);
            dq = 0.0f;
        }
        s->q[i] = q;
        s->dq[i] = dq;
        s->effort[i] = u;
        float speed = dq < 0.0f ? -dq : dq;
        s->peak_speed[i] = speed > s->peak_speed[i] ? speed : s->peak_speed[i];
    }
}
