/* The messages of the wire protocol v1 (docs/wire-protocol.md section 3): body checks in the
 * spec's order and encoders for what the MCU sends.  Arrays stay little-endian bytes inside
 * the received payload; read them with kk_get_f32. */
#ifndef KK_MSG_H
#define KK_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "kk_wire.h"

#define KK_WIRE_MAX_JOINTS 60u

enum {
    KK_HELLO = 0x01, KK_CAPS = 0x02, KK_STATE = 0x03, KK_COMMAND = 0x04, KK_HEARTBEAT = 0x05,
    KK_ESTOP = 0x06, KK_FAULT = 0x07, KK_ACK = 0x08, KK_ARM = 0x09
};
enum { KK_MODE_HOLD = 0, KK_MODE_POSITION = 1 };
enum { KK_FLAG_VELOCITY = 1, KK_FLAG_EFFORT = 2 };
enum {
    KK_FAULT_WATCHDOG = 1, KK_FAULT_ESTOP = 2, KK_FAULT_BAD_COMMAND = 3,
    KK_FAULT_POSITION_LIMIT = 4
};
/* FAULT details: WATCHDOG µs since fed, bit 31 set when no COMMAND came since ARM;
 * BAD_COMMAND kind in bits 24-31: joint count in the low 8 bits, or array << 16 | joint. */
#define KK_WATCHDOG_NO_COMMAND 0x80000000u
#define KK_BAD_JOINT_COUNT 0x01000000u
#define KK_BAD_VALUE 0x02000000u
enum { KK_ACK_OK = 0, KK_ACK_BUSY = 1, KK_ACK_NOT_CONFIGURED = 2, KK_ACK_REJECTED = 3 };
enum {
    KK_ST_ARMED = 1, KK_ST_ESTOP = 2, KK_ST_WATCHDOG = 4, KK_ST_FAULT = 8, KK_ST_STOPPING = 16
};

/* A message whose body passed checks 6-7.  For COMMAND, q/v/e point at n little-endian f32
 * each (v and e are NULL when their flag is clear). */
typedef struct {
    uint8_t type;
    union {
        struct { uint32_t command_period_us, state_period_us; } hello;
        struct { uint16_t arm_id; } arm;
        struct {
            uint8_t mode, flags, n;
            const uint8_t *q, *v, *e;
        } command;
    } u;
} kk_msg_t;

/* Checks 6-7 of section 2.4 on a frame's type and body; fills *msg on KK_OK. */
kk_err_t kk_msg_parse(const kk_frame_t *frame, kk_msg_t *msg);

/* Body encoders; each returns the body length written into body (KK_MAX_BODY bytes). */
size_t kk_body_caps(uint8_t *body, uint8_t n, uint32_t joint_hash, uint32_t servo_us,
                    uint32_t command_us, uint32_t state_us, uint32_t watchdog_us,
                    const float *lower, const float *upper, const float *velocity,
                    const float *effort);
size_t kk_body_state(uint8_t *body, uint8_t status, uint8_t n, uint16_t last_cmd_seq,
                     const float *q, const float *dq, const float *effort);
size_t kk_body_fault(uint8_t *body, uint16_t code, uint16_t fault_id, uint32_t detail);
size_t kk_body_ack(uint8_t *body, uint8_t acked_type, uint16_t acked_seq, uint8_t result);

#endif
