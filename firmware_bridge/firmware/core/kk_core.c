/* Session state machine, watchdog, e-stop latch, limit check and category-1 stop: see
 * kk_core.h and docs/wire-protocol.md section 6.  Mirrors karakuri.firmware_bridge.mcu_core
 * and mcu_reference; the differential test (tests/firmware/test_fw_differential.py) feeds
 * both the same bytes.  Decisions that choose a frame or a tick (the position check, the end
 * of the stop) are computed in double exactly as the reference does; the servo reference
 * itself runs in float. */
#include "kk_core.h"

#include <string.h>

#define MAX_COMMAND_PERIOD_US 1000000u

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void send(kk_core_t *c, uint8_t type, const uint8_t *body, size_t len, uint32_t t_us) {
    c->tx_seq = kk_seq_next(c->tx_seq);
    size_t n = kk_build_payload(type, c->tx_seq, t_us, body, len, c->payload);
    size_t f = kk_frame_payload(c->payload, n, c->frame);
    c->counters.frames_tx++;
    if (c->tx) {
        c->tx(c->tx_ctx, c->frame, f);
    }
}

static void hold(kk_core_t *c, const float *q) {
    for (uint8_t i = 0; i < c->lim.n; i++) {
        c->q_ref[i] = c->q_goal[i] = q[i];
        c->v_ref[i] = 0.0f;
        c->tau_ff[i] = 0.0f;
    }
    c->holding = 1;
}

/* Whole servo periods in `asked_us`, at least one. */
static uint32_t state_period(const kk_core_t *c, uint32_t asked_us) {
    uint32_t steps = asked_us / c->lim.servo_period_us;
    return (steps < 1u ? 1u : steps) * c->lim.servo_period_us;
}

int kk_core_init(kk_core_t *c, const kk_limits_t *lim, kk_tx_fn tx, void *tx_ctx,
                 const float *q) {
    memset(c, 0, sizeof *c);
    if (lim->n < 1 || lim->n > KK_MAX_JOINTS || lim->servo_period_us == 0 ||
        lim->default_state_period_us == 0) {
        return -1;
    }
    for (uint8_t i = 0; i < lim->n; i++) {
        if (!(lim->lower[i] <= lim->upper[i]) || !(lim->velocity_limit[i] > 0.0f) ||
            !(lim->effort_limit[i] > 0.0f) || !(lim->stop_decel[i] > 0.0f)) {
            return -1;
        }
    }
    c->lim = *lim;
    (void)kk_crc32(c->payload, 0); /* builds the CRC table now, not in the first servo period */
    for (uint8_t i = 0; i < lim->n; i++) {
        /* margin = min(0.05, 0.1 x range): how far a measured position may lie past a limit */
        double lo = lim->lower[i], hi = lim->upper[i], margin = 0.1 * (hi - lo);
        margin = margin < 0.05 ? margin : 0.05;
        c->bound_lo[i] = lo - margin;
        c->bound_hi[i] = hi + margin;
        c->max_step[i] = lim->velocity_limit[i] * ((float)lim->servo_period_us * 1e-6f);
    }
    c->tx = tx;
    c->tx_ctx = tx_ctx;
    c->mode = KK_DISARMED;
    c->watchdog_us = KK_WATCHDOG_MAX_US;
    c->state_period_us = state_period(c, lim->default_state_period_us);
    kk_decoder_init(&c->decoder);
    hold(c, q);
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

/* Index of the first measured position outside the limits +- margin (or NaN), else -1. */
static int first_outside(const kk_core_t *c, const float *q) {
    for (uint8_t i = 0; i < c->lim.n; i++) {
        double v = q[i];
        if (!(v >= c->bound_lo[i] && v <= c->bound_hi[i])) {
            return i;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ faults and the stop */
static void new_fault(kk_core_t *c, uint16_t code, uint32_t detail, uint32_t t_us, int latch) {
    c->fault_id = kk_seq_next(c->fault_id);
    uint8_t body[8];
    size_t len = kk_body_fault(body, code, c->fault_id, detail);
    if (latch) {
        memcpy(c->fault_body, body, sizeof body);
        c->fault_latched = 1;
        c->fault_us = t_us;
    }
    send(c, KK_FAULT, body, len, t_us);
}

/* The ramp's position and velocity reference `elapsed_us` after the trip. */
static void stop_reference(const kk_core_t *c, uint32_t elapsed_us, float *q, float *v) {
    const kk_stop_t *s = &c->stop;
    float t = (float)elapsed_us * 1e-6f;
    for (uint8_t i = 0; i < c->lim.n; i++) {
        float v0 = s->v0[i];
        float tau = t < s->t_end[i] ? t : s->t_end[i];
        float acc = v0 > 0.0f ? s->decel[i] : (v0 < 0.0f ? -s->decel[i] : 0.0f);
        q[i] = clampf(s->q0[i] + v0 * tau - 0.5f * acc * tau * tau, s->lo[i], s->hi[i]);
        v[i] = tau < s->t_end[i] ? v0 - acc * tau : 0.0f;
    }
}

/* Plans the stop from the measured state: start at the measured position with the measured
 * speed clipped to the velocity limit, decelerate at stop_decel, or harder where that is
 * needed to come to rest at a limit; never move further past a limit than already. */
static void begin_stop(kk_core_t *c, uint32_t t_us, const float *q, const float *dq,
                       uint16_t cause, uint32_t detail) {
    kk_stop_t *s = &c->stop;
    double longest = 0.0; /* s */
    for (uint8_t i = 0; i < c->lim.n; i++) {
        const kk_limits_t *l = &c->lim;
        double q0 = kk_isfinite(q[i]) ? q[i] : c->q_ref[i];
        double vmax = l->velocity_limit[i];
        double v0 = kk_isfinite(dq[i]) ? dq[i] : 0.0;
        v0 = v0 < -vmax ? -vmax : (v0 > vmax ? vmax : v0);
        double lo = l->lower[i] < q0 ? l->lower[i] : q0;
        double hi = l->upper[i] > q0 ? l->upper[i] : q0;
        double room = v0 > 0.0 ? hi - q0 : q0 - lo;
        v0 = room > 0.0 ? v0 : 0.0;
        double need = room > 0.0 ? v0 * v0 / (2.0 * room) : 0.0;
        double decel = l->stop_decel[i] > need ? l->stop_decel[i] : need;
        double t_end = (v0 < 0.0 ? -v0 : v0) / decel;
        longest = t_end > longest ? t_end : longest;
        s->q0[i] = (float)q0;
        s->v0[i] = (float)v0;
        s->decel[i] = (float)decel;
        s->t_end[i] = (float)t_end;
        s->lo[i] = (float)lo;
        s->hi[i] = (float)hi;
        c->tau_ff[i] = 0.0f;
    }
    double us = longest * 1e6 - 1e-3; /* over once elapsed >= duration (less 1 ns slack) */
    uint32_t whole = us > 4.0e9 ? 4000000000u : (us > 0.0 ? (uint32_t)us : 0u);
    s->duration_us = whole + (us > 0.0 && (double)whole < us ? 1u : 0u);
    s->t0_us = t_us;
    s->then_disarmed = cause == KK_CAUSE_NONE;
    s->cause = cause;
    s->detail = detail;
    c->stopping = 1;
    c->mode = KK_STOPPING;
    stop_reference(c, 0, c->q_ref, c->v_ref);
}

/* A stop cause: start a stop, or upgrade HELLO's causeless one; 1 if it took effect. */
static int trip(kk_core_t *c, uint32_t t_us, const float *q, const float *dq, uint16_t cause,
                uint32_t detail) {
    if (c->mode == KK_ARMED || c->mode == KK_DISARMED) {
        begin_stop(c, t_us, q, dq, cause, detail);
        return 1;
    }
    if (c->stopping && c->stop.cause == KK_CAUSE_NONE) {
        c->stop.cause = cause;
        c->stop.detail = detail;
        c->stop.then_disarmed = 0;
        return 1;
    }
    return 0; /* the first cause wins */
}

static void finish_stop(kk_core_t *c, uint32_t t_us) {
    float q[KK_MAX_JOINTS], v[KK_MAX_JOINTS];
    stop_reference(c, c->stop.duration_us + 1000000u, q, v); /* at rest */
    c->stopping = 0;
    c->mode = c->stop.then_disarmed ? KK_DISARMED : KK_FAULTED;
    hold(c, q);
    if (c->stop.cause != KK_CAUSE_NONE) {
        new_fault(c, c->stop.cause, c->stop.detail, t_us, 1);
    }
}

/* ------------------------------------------------------------------ messages */
static void on_hello(kk_core_t *c, const kk_msg_t *m, uint32_t t_us, const float *q,
                     const float *dq) {
    uint32_t servo = c->lim.servo_period_us;
    uint32_t cmd = m->u.hello.command_period_us;
    cmd = cmd < servo ? servo : cmd;
    cmd = cmd > MAX_COMMAND_PERIOD_US ? MAX_COMMAND_PERIOD_US : cmd;
    uint32_t asked = m->u.hello.state_period_us ? m->u.hello.state_period_us
                                                : c->lim.default_state_period_us;
    c->state_period_us = state_period(c, asked < cmd ? asked : cmd); /* never slower */
    c->command_period_us = cmd;
    uint64_t wd = (uint64_t)KK_WATCHDOG_PERIODS * cmd;
    c->watchdog_us = wd < KK_WATCHDOG_MAX_US ? (uint32_t)wd : KK_WATCHDOG_MAX_US;
    c->configured = 1;
    c->have_arm_id = 0;
    if (c->mode == KK_ARMED) {
        begin_stop(c, t_us, q, dq, KK_CAUSE_NONE, 0);
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
    if (first_outside(c, q) >= 0) {
        return KK_ACK_REJECTED; /* cannot arm with a joint measured outside its limits */
    }
    if (c->mode != KK_ARMED) {
        c->mode = KK_ARMED;
        c->latched = 0;
        c->fault_latched = 0;
        hold(c, q);
        c->last_cmd_us = t_us;
        c->last_cmd_seq = 0;
        c->commanded = 0;
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
        new_fault(c, KK_FAULT_BAD_COMMAND, KK_BAD_JOINT_COUNT | n, t_us, 0);
        return;
    }
    const uint8_t *arrays[3] = {m->u.command.q, m->u.command.v, m->u.command.e};
    for (uint32_t a = 0; a < 3u; a++) {
        for (uint8_t i = 0; arrays[a] && i < n; i++) {
            if (!kk_isfinite(kk_get_f32(arrays[a] + 4u * i))) {
                c->counters.commands_rejected++;
                new_fault(c, KK_FAULT_BAD_COMMAND, KK_BAD_VALUE | a << 16 | i, t_us, 0);
                return;
            }
        }
    }
    if (c->mode != KK_ARMED) {
        c->counters.commands_ignored++;
        return;
    }
    uint16_t ahead = kk_seq_distance(seq, c->last_cmd_seq);
    if (c->commanded && !(ahead > 0u && ahead < 0x8000u)) {
        c->counters.commands_stale++; /* a duplicate or an older COMMAND: never go back */
        return;
    }
    c->last_cmd_us = t_us;
    c->last_cmd_seq = seq;
    c->commanded = 1;
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
        c->q_goal[i] = clampf(target, l->lower[i], l->upper[i]);
        clipped |= c->q_goal[i] != target;
        c->v_ref[i] = clampf(v, -l->velocity_limit[i], l->velocity_limit[i]);
        c->tau_ff[i] = clampf(e, -l->effort_limit[i], l->effort_limit[i]);
    }
    c->counters.commands_clipped += (uint32_t)clipped;
    c->holding = 0;
}

static void handle(kk_core_t *c, const kk_frame_t *f, const kk_msg_t *m, uint32_t t_us,
                   const float *q, const float *dq) {
    uint8_t body[4];
    uint8_t result = KK_ACK_OK;
    switch (m->type) {
    case KK_COMMAND: on_command(c, f->seq, m, t_us, q); return;
    case KK_HELLO: on_hello(c, m, t_us, q, dq); return;
    case KK_ARM: result = on_arm(c, m->u.arm.arm_id, t_us, q); break;
    case KK_ESTOP:
        c->counters.estops++;
        c->latched |= KK_ST_ESTOP;
        (void)trip(c, t_us, q, dq, KK_FAULT_ESTOP, 0);
        break;
    default: break; /* HEARTBEAT */
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
        if (m.type == KK_CAPS || m.type == KK_STATE || m.type == KK_FAULT || m.type == KK_ACK) {
            c->host_bound++; /* MCU -> host types: a message error here */
            continue;
        }
        c->counters.frames_rx++;
        if (m.type == KK_HELLO) {
            kk_seq_restart(&c->rx_seq);
        }
        c->counters.seq_gaps += kk_seq_update(&c->rx_seq, f.seq);
        handle(c, &f, &m, t_us, q, dq);
    }
    const kk_decoder_stats_t *st = &c->decoder.stats;
    c->counters.crc_errors = st->crc_errors;
    c->counters.length_errors = st->length_errors;
    c->counters.other_errors = st->version_errors + st->message_errors + c->host_bound;
}

/* ------------------------------------------------------------------ time */
void kk_core_tick(kk_core_t *c, uint32_t t_us, const float *q, const float *dq,
                  const float *effort) {
    int joint = first_outside(c, q);
    if (joint >= 0 && c->mode != KK_FAULTED &&
        trip(c, t_us, q, dq, KK_FAULT_POSITION_LIMIT, (uint32_t)joint)) {
        c->counters.limit_faults++;
    }
    uint32_t since_fed = t_us - c->last_cmd_us;
    if (c->mode == KK_ARMED && since_fed >= c->watchdog_us) {
        c->counters.watchdog_trips++;
        c->latched |= KK_ST_WATCHDOG;
        uint32_t gap = since_fed < KK_WATCHDOG_NO_COMMAND ? since_fed
                                                          : KK_WATCHDOG_NO_COMMAND - 1u;
        (void)trip(c, t_us, q, dq, KK_FAULT_WATCHDOG,
                   gap | (c->commanded ? 0u : KK_WATCHDOG_NO_COMMAND));
    }
    if (c->stopping) {
        uint32_t elapsed = t_us - c->stop.t0_us;
        stop_reference(c, elapsed, c->q_ref, c->v_ref);
        if (elapsed >= c->stop.duration_us) {
            finish_stop(c, t_us);
        }
    } else if (c->mode == KK_ARMED && !c->holding) {
        for (uint8_t i = 0; i < c->lim.n; i++) { /* slew at the velocity limit */
            float step = clampf(c->q_goal[i] - c->q_ref[i], -c->max_step[i], c->max_step[i]);
            c->q_ref[i] += step;
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
