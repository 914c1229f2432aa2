/* The MCU side of the Karakuri wire protocol v1: session state machine, watchdog, e-stop
 * latch and category-1 stop (docs/wire-protocol.md section 6), the C twin of
 * karakuri.firmware_bridge.mcu_core.McuCore.
 *
 * Pure and clock-driven: the port feeds received bytes (kk_core_receive, any time, e.g. from
 * the servo loop after draining the UART ring) and calls kk_core_tick once per servo period
 * with the measured joint state; the core answers through the tx callback and leaves the
 * servo reference in q_ref / v_ref / tau_ff.  No heap; sizes are fixed at compile time.
 * Times are the MCU clock in microseconds (uint32, wraps after 71 minutes: all arithmetic is
 * on differences). */
#ifndef KK_CORE_H
#define KK_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "kk_msg.h"
#include "kk_wire.h"

#ifndef KK_MAX_JOINTS
#define KK_MAX_JOINTS 16 /* joints this firmware drives, at most (the wire allows 60) */
#endif

#define KK_WATCHDOG_PERIODS 3u
#define KK_WATCHDOG_MAX_US 50000u
#define KK_FAULT_REPEAT_US 500000u

typedef enum { KK_DISARMED = 0, KK_ARMED = 1, KK_STOPPING = 2, KK_FAULTED = 3 } kk_mode_t;

/* What the MCU drives: reported in CAPS and enforced.  Arrays: n values, rad or m, rad/s or
 * m/s, N*m or N, rad/s^2 or m/s^2. */
typedef struct {
    uint8_t n;
    uint32_t joint_hash;
    uint32_t servo_period_us;
    uint32_t default_state_period_us; /* STATE period until a HELLO asks for another */
    float lower[KK_MAX_JOINTS];
    float upper[KK_MAX_JOINTS];
    float velocity_limit[KK_MAX_JOINTS];
    float effort_limit[KK_MAX_JOINTS];
    float stop_decel[KK_MAX_JOINTS];
} kk_limits_t;

/* Counters since power-up (names as in McuCounters). */
typedef struct {
    uint32_t frames_rx, frames_tx, crc_errors, length_errors, other_errors, seq_gaps;
    uint32_t commands_applied, commands_ignored, commands_rejected, commands_stale;
    uint32_t commands_clipped, watchdog_trips, estops, limit_faults;
} kk_counters_t;

/* Called with each encoded frame (delimiter included), in order. */
typedef void (*kk_tx_fn)(void *ctx, const uint8_t *frame, size_t len);

/* A category-1 stop, planned once at the trip (docs/wire-protocol.md section 6). */
typedef struct {
    uint32_t t0_us;
    uint32_t duration_us; /* first elapsed time at which the ramp is over */
    float q0[KK_MAX_JOINTS], v0[KK_MAX_JOINTS], decel[KK_MAX_JOINTS], t_end[KK_MAX_JOINTS];
    float lo[KK_MAX_JOINTS], hi[KK_MAX_JOINTS]; /* the ramp stays inside [lo, hi] */
    int then_disarmed;    /* HELLO while armed: ends DISARMED without a FAULT */
    uint16_t cause;       /* KK_CAUSE_*; the FAULT code it ends with */
    uint32_t detail;
} kk_stop_t;

enum { KK_CAUSE_NONE = 0 }; /* other causes are FAULT codes: WATCHDOG, ESTOP, POSITION_LIMIT */

typedef struct {
    kk_limits_t lim;
    kk_tx_fn tx;
    void *tx_ctx;
    kk_mode_t mode;
    double bound_lo[KK_MAX_JOINTS], bound_hi[KK_MAX_JOINTS]; /* limits -/+ position margin */
    float max_step[KK_MAX_JOINTS]; /* velocity_limit x servo period: slew per tick */
    float q_goal[KK_MAX_JOINTS];   /* where q_ref slews to while ARMED */
    int commanded;                 /* a COMMAND was applied since the last ARM */
    uint32_t host_bound;           /* MCU-bound types received (counted as other errors) */
    uint8_t latched;           /* ESTOP / WATCHDOG bits held until ARM */
    int configured;            /* a HELLO arrived */
    uint32_t command_period_us, watchdog_us, state_period_us;
    uint16_t last_cmd_seq;
    uint32_t last_cmd_us, last_state_us;
    int state_sent;
    uint16_t tx_seq, fault_id;
    int have_arm_id;
    uint16_t last_arm_id;
    int holding;
    int stopping;
    kk_stop_t stop;
    int fault_latched;         /* repeat fault_body every 0.5 s while set */
    uint32_t fault_us;
    uint8_t fault_body[8];
    float q_ref[KK_MAX_JOINTS], v_ref[KK_MAX_JOINTS], tau_ff[KK_MAX_JOINTS];
    kk_counters_t counters;
    kk_decoder_t decoder;
    kk_seq_t rx_seq;
    uint8_t body[KK_MAX_BODY];
    uint8_t payload[KK_MAX_PAYLOAD];
    uint8_t frame[KK_MAX_ENCODED + 1];
} kk_core_t;

/* Power-up: DISARMED, holding the measured position q.  Returns 0, or -1 when the limits
 * are unusable (n outside 1..KK_MAX_JOINTS, a zero servo period, a decel <= 0). */
int kk_core_init(kk_core_t *c, const kk_limits_t *lim, kk_tx_fn tx, void *tx_ctx,
                 const float *q);
/* Bytes from the host, at MCU time t_us with the measured q, dq (n each). */
void kk_core_receive(kk_core_t *c, const uint8_t *data, size_t n, uint32_t t_us,
                     const float *q, const float *dq);
/* One servo period: watchdog, stop ramp, FAULT repeats, STATE when due. */
void kk_core_tick(kk_core_t *c, uint32_t t_us, const float *q, const float *dq,
                  const float *effort);
/* Status bits as sent in STATE. */
uint8_t kk_core_status(const kk_core_t *c);

#endif
