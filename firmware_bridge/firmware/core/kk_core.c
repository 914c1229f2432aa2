/* Session state machine, watchdog, e-stop latch and category-1 stop: see kk_core.h and
 * docs/wire-protocol.md section 6.  Mirrors karakuri.firmware_bridge.mcu_core.McuCore; the
 * differential test (tests/firmware/test_fw_differential.py) feeds both the same bytes. */
#include "kk_core.h"

#include <string.h>

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void send(kk_core_t *c, uint8_t type, const uint8_t *body, size_t len, uint32_t t_us) {
    c->tx_seq = (uint16_t)(c->tx_seq + 1u);
    size_t n = kk_build_payload(type, c->tx_seq, t_us, body, len, c->payload);
    size_t f = kk_frame_payload(c->payload, n, c->frame);
    c->counters.frames_tx++;
    if (c->tx) {
        c->tx(c->tx_ctx, c->frame, f);
    }
}

static void hold(kk_core_t *c, const float *q) {
    for (uint8_t i = 0; i < c->lim.n; i++) {
        c->q_ref[i] = q[i];
        c->v_ref[i] = 0.0f;
        c->tau_ff[i] = 0.0f;
    }
    c->holding = 1;
}

int kk_core_init(kk_core_t *c, const kk_limits_t *lim, kk_tx_fn tx, void *tx_ctx,
                 const float *q) {
    memset(c, 0, sizeof *c);
    if (lim->n < 1 || lim->n > KK_MAX_JOINTS || lim->servo_period_us == 0 ||
        lim->default_state_period_us == 0) {
        return -1;
    }
    for (uint8_t i = 0; i < lim->n; i++) {
        if (!(lim->stop_decel[i] > 0.0f) || !(lim->lower[i] <= lim->upper[i])) {
            return -1;
        }
    }
    c->lim = *lim;
    (void)kk_crc32(c->payload, 0); /* builds the CRC table now, not in the first servo period */
    c->tx = tx;
    c->tx_ctx = tx_ctx;
    c->mode = KK_DISARMED;
    c->watchdog_us = KK_WATCHDOG_MAX_US;
    c->state_period_us = lim->default_state_period_us;
    kk_decoder_init(&c->decoder);
    hold(c, q);
    c->holding = 0;
    return 0;
}

uint8_t kk_core_status(const kk_core_t *c) {
    uint8_t s = c->latched;
    if (c->mode == KK_ARMED) {
        s |= KK_ST_ARMED;
    } else if (c->mode == KK_STOPPING) {
        s |= KK_ST_STOPPING;
    } else if (c->mode == KK_FAULTED) {
        s |= KK_ST_FAULT;
    }
    return s;
}

/* ------------------------------------------------------------------ faults and the stop */
static void new_fault(kk_core_t *c, uint16_t code, uint32_t detail, uint32_t t_us, int latch) {
    c->fault_id = (uint16_t)(c->fault_id + 1u);
    uint8_t body[8];
    size_t len = kk_body_fault(body, code, c->fault_id, detail);
    if (latch) {
        memcpy(c->fault_body, body, sizeof body);
        c->fault_latched = 1;
        c->fault_us = t_us;
    }
    send(c, KK_FAULT, body, len, t_us);
}

static void begin_stop(kk_core_t *c, uint32_t t_us, const float *q, const float *dq,
                       kk_mode_t then, uint16_t cause, uint32_t detail) {
    kk_stop_t *s = &c->stop;
    double longest = 0.0; /* s; double so the end matches the reference core to the µs */
    for (uint8_t i = 0; i < c->lim.n; i++) {
        s->q0[i] = q[i];
        s->v0[i] = dq[i];
        double d = (double)(dq[i] < 0.0f ? -dq[i] : dq[i]) / (double)c->lim.stop_decel[i];
        longest = d > longest ? d : longest;
        c->tau_ff[i] = 0.0f;
    }
    double us = longest * 1e6 - 1e-3; /* over once elapsed >= duration (less 1 ns slack) */
    uint32_t whole = us > 4.0e9 ? 4000000000u : (us > 0.0 ? (uint32_t)us : 0u);
    s->duration_us = whole + (us > 0.0 && (double)whole < us ? 1u : 0u);
    s->t0_us = t_us;
    s->then = then;
    s->cause = cause;
    s->detail = detail;
    c->stopping = 1;
    c->mode = KK_STOPPING;
}

/* The ramp's position and velocity reference `elapsed_us` after the trip. */
static void stop_reference(const kk_core_t *c, uint32_t elapsed_us, float *q, float *v) {
    const kk_stop_t *s = &c->stop;
    float t = (float)elapsed_us * 1e-6f;
    for (uint8_t i = 0; i < c->lim.n; i++) {
        float v0 = s->v0[i], a = c->lim.stop_decel[i];
        float speed = v0 < 0.0f ? -v0 : v0;
        float tau = t < speed / a ? t : speed / a;
        float acc = v0 > 0.0f ? a : (v0 < 0.0f ? -a : 0.0f);
        q[i] = s->q0[i] + v0 * tau - 0.5f * acc * tau * tau;
        v[i] = v0 - acc * tau;
    }
}

static void finish_stop(kk_core_t *c, uint32_t t_us) {
    float q[KK_MAX_JOINTS], v[KK_MAX_JOINTS];
    stop_reference(c, t_us - c->stop.t0_us, q, v);
    c->stopping = 0;
    c->mode = c->stop.then;
    hold(c, q);
    if (c->stop.cause != 0) {
        new_fault(c, c->stop.cause, c->stop.detail, t_us, 1);
    }
}

/* ------------------------------------------------------------------ messages */
static void on_hello(kk_core_t *c, const kk_msg_t *m, uint32_t t_us, const float *q,
                     const float *dq) {
    uint32_t servo = c->lim.servo_period_us;
    uint32_t cmd = m->u.hello.command_period_us;
    cmd = cmd < servo ? servo : cmd;
    cmd = cmd > 1000000u ? 1000000u : cmd;
    uint32_t asked = m->u.hello.state_period_us ? m->u.hello.state_period_us
                                                : c->lim.default_state_period_us;
    uint32_t steps = asked / servo; /* rounded down: never slower than asked */
    steps = steps < 1u ? 1u : steps;
    c->state_period_us = steps * servo;
    c->command_period_us = cmd;
    uint64_t wd = (uint64_t)KK_WATCHDOG_PERIODS * cmd;
    c->watchdog_us = wd < KK_WATCHDOG_MAX_US ? (uint32_t)wd : KK_WATCHDOG_MAX_US;
    c->configured = 1;
    c->have_arm_id = 0;
    if (c->mode == KK_ARMED) {
        begin_stop(c, t_us, q, dq, KK_DISARMED, 0, 0);
    }
    const kk_limits_t *l = &c->lim;
    size_t len = kk_body_caps(c->body, l->n, l->joint_hash, servo, cmd, c->state_period_us,
                              c->watchdog_us, l->lower, l->upper, l->velocity_limit,
                              l->effort_limit);
    send(c, KK_CAPS, c->body, len, t_us);
}

static uint8_t on_arm(kk_core_t *c, uint16_t arm_id, uint32_t t_us, const float *q) {
    if (!c->configured) {
        return KK_ACK_NOT_CONFIGURED;
    }
    if (c->have_arm_id && arm_id == c->last_arm_id) {
        return KK_ACK_OK; /* a repeat of the ARM already acted on: never re-arm with it */
    }
    if (c->mode == KK_STOPPING) {
        return KK_ACK_BUSY;
    }
    if (c->mode != KK_ARMED) {
        c->mode = KK_ARMED;
        c->latched = 0;
        c->fault_latched = 0;
        hold(c, q);
        c->last_cmd_us = t_us;
    }
    c->have_arm_id = 1;
    c->last_arm_id = arm_id;
    return KK_ACK_OK;
}

static void on_command(kk_core_t *c, uint16_t seq, const kk_msg_t *m, uint32_t t_us,
                       const float *q) {
    uint8_t n = m->u.command.n;
    if (n != c->lim.n) {
        c->counters.commands_rejected++;
        new_fault(c, KK_FAULT_BAD_COMMAND, n, t_us, 0);
        return;
    }
    const uint8_t *arrays[3] = {m->u.command.q, m->u.command.v, m->u.command.e};
    for (int a = 0; a < 3; a++) {
        for (uint8_t i = 0; arrays[a] && i < n; i++) {
            if (!kk_isfinite(kk_get_f32(arrays[a] + 4u * i))) {
                c->counters.commands_rejected++;
                new_fault(c, KK_FAULT_BAD_COMMAND, i, t_us, 0);
                return;
            }
        }
    }
    if (c->mode != KK_ARMED) {
        c->counters.commands_ignored++;
        return;
    }
    c->last_cmd_us = t_us;
    c->last_cmd_seq = seq;
    c->counters.commands_applied++;
    if (m->u.command.mode == KK_MODE_HOLD) {
        if (!c->holding) {
            hold(c, q);
        }
        return;
    }
    const kk_limits_t *l = &c->lim;
    int clipped = 0;
    for (uint8_t i = 0; i < n; i++) {
        float target = kk_get_f32(m->u.command.q + 4u * i);
        float v = m->u.command.v ? kk_get_f32(m->u.command.v + 4u * i) : 0.0f;
        float e = m->u.command.e ? kk_get_f32(m->u.command.e + 4u * i) : 0.0f;
        c->q_ref[i] = clampf(target, l->lower[i], l->upper[i]);
        clipped |= c->q_ref[i] != target;
        c->v_ref[i] = clampf(v, -l->velocity_limit[i], l->velocity_limit[i]);
        c->tau_ff[i] = clampf(e, -l->effort_limit[i], l->effort_limit[i]);
    }
    c->counters.commands_clipped += (uint32_t)clipped;
    c->holding = 0;
}

static void on_estop(kk_core_t *c, uint32_t t_us, const float *q, const float *dq) {
    c->counters.estops++;
    c->latched |= KK_ST_ESTOP;
    if (c->mode == KK_ARMED || c->mode == KK_DISARMED) {
        begin_stop(c, t_us, q, dq, KK_FAULTED, KK_FAULT_ESTOP, 0);
    } else if (c->stopping && c->stop.cause == 0) {
        c->stop.then = KK_FAULTED; /* HELLO's stop becomes an e-stop */
        c->stop.cause = KK_FAULT_ESTOP;
    }
}

static void handle(kk_core_t *c, const kk_frame_t *f, const kk_msg_t *m, uint32_t t_us,
                   const float *q, const float *dq) {
    uint8_t body[4];
    uint8_t result = KK_ACK_OK;
    switch (m->type) {
    case KK_COMMAND: on_command(c, f->seq, m, t_us, q); return;
    case KK_HELLO: on_hello(c, m, t_us, q, dq); return;
    case KK_ARM: result = on_arm(c, m->u.arm.arm_id, t_us, q); break;
    case KK_ESTOP: on_estop(c, t_us, q, dq); break;
    case KK_HEARTBEAT: break;
    default: return; /* CAPS, STATE, FAULT, ACK travel MCU -> host only: dropped */
    }
    send(c, KK_ACK, body, kk_body_ack(body, m->type, f->seq, result), t_us);
}

void kk_core_receive(kk_core_t *c, const uint8_t *data, size_t n, uint32_t t_us,
                     const float *q, const float *dq) {
    kk_frame_t f;
    kk_msg_t m;
    for (size_t k = 0; k < n; k++) {
        if (!kk_decoder_push(&c->decoder, data[k], &f)) {
            continue;
        }
        kk_err_t err = kk_msg_parse(&f, &m);
        kk_decoder_count(&c->decoder, err);
        if (err != KK_OK) {
            continue;
        }
        c->counters.frames_rx++;
        c->counters.seq_gaps += kk_seq_update(&c->rx_seq, f.seq);
        handle(c, &f, &m, t_us, q, dq);
    }
    const kk_decoder_stats_t *st = &c->decoder.stats;
    c->counters.crc_errors = st->crc_errors;
    c->counters.length_errors = st->length_errors;
    c->counters.other_errors = st->version_errors + st->message_errors;
}

/* ------------------------------------------------------------------ time */
void kk_core_tick(kk_core_t *c, uint32_t t_us, const float *q, const float *dq,
                  const float *effort) {
    if (c->mode == KK_ARMED && (uint32_t)(t_us - c->last_cmd_us) >= c->watchdog_us) {
        c->counters.watchdog_trips++;
        c->latched |= KK_ST_WATCHDOG;
        begin_stop(c, t_us, q, dq, KK_FAULTED, KK_FAULT_WATCHDOG, t_us - c->last_cmd_us);
    }
    if (c->stopping) {
        uint32_t elapsed = t_us - c->stop.t0_us;
        stop_reference(c, elapsed, c->q_ref, c->v_ref);
        if (elapsed >= c->stop.duration_us) {
            finish_stop(c, t_us);
        }
    }
    if (c->fault_latched && (uint32_t)(t_us - c->fault_us) >= KK_FAULT_REPEAT_US) {
        c->fault_us = t_us;
        send(c, KK_FAULT, c->fault_body, sizeof c->fault_body, t_us);
    }
    if (!c->state_sent || (uint32_t)(t_us - c->last_state_us) >= c->state_period_us) {
        c->state_sent = 1;
        c->last_state_us = t_us;
        uint8_t st = kk_core_status(c);
        size_t len = kk_body_state(c->body, st, c->lim.n, c->last_cmd_seq, q, dq, effort);
        send(c, KK_STATE, c->body, len, t_us);
    }
}
