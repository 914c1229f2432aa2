/* Message checks and encoders: see kk_msg.h.  The order of the checks matches the host's
 * decoder (karakuri.firmware_bridge.messages), so both count a bad frame the same way. */
#include "kk_msg.h"

/* Fixed-size bodies: HELLO, HEARTBEAT, ESTOP, FAULT, ACK, ARM. */
static long fixed_size(uint8_t type) {
    switch (type) {
    case KK_HELLO: return 8;
    case KK_HEARTBEAT: return 0;
    case KK_ESTOP: return 0;
    case KK_FAULT: return 8;
    case KK_ACK: return 4;
    case KK_ARM: return 2;
    default: return -1;
    }
}

/* CAPS and STATE: a fixed head with n_joints, then `count` arrays of n f32. */
static kk_err_t check_arrays(const kk_frame_t *f, size_t head, size_t n_at, size_t count) {
    if (f->body_len < head) {
        return KK_ERR_LENGTH;
    }
    size_t n = f->body[n_at];
    if (n < 1 || n > KK_WIRE_MAX_JOINTS) {
        return KK_ERR_MESSAGE;
    }
    return f->body_len == head + 4u * n * count ? KK_OK : KK_ERR_LENGTH;
}

static kk_err_t parse_command(const kk_frame_t *f, kk_msg_t *msg) {
    const uint8_t *b = f->body;
    if (f->body_len < 3) {
        return KK_ERR_LENGTH;
    }
    uint8_t mode = b[0], flags = b[1], n = b[2];
    if (flags & ~(KK_FLAG_VELOCITY | KK_FLAG_EFFORT)) {
        return KK_ERR_MESSAGE;
    }
    if (n < 1 || n > KK_WIRE_MAX_JOINTS) {
        return KK_ERR_MESSAGE;
    }
    size_t arrays = 1u + ((flags & KK_FLAG_VELOCITY) != 0) + ((flags & KK_FLAG_EFFORT) != 0);
    if (f->body_len != 3u + 4u * n * arrays) {
        return KK_ERR_LENGTH;
    }
    if (mode != KK_MODE_HOLD && mode != KK_MODE_POSITION) {
        return KK_ERR_MESSAGE;
    }
    msg->u.command.mode = mode;
    msg->u.command.flags = flags;
    msg->u.command.n = n;
    msg->u.command.q = b + 3;
    const uint8_t *next = b + 3 + 4u * n;
    msg->u.command.v = (flags & KK_FLAG_VELOCITY) ? next : NULL;
    if (flags & KK_FLAG_VELOCITY) {
        next += 4u * n;
    }
    msg->u.command.e = (flags & KK_FLAG_EFFORT) ? next : NULL;
    return KK_OK;
}

kk_err_t kk_msg_parse(const kk_frame_t *f, kk_msg_t *msg) {
    msg->type = f->type;
    switch (f->type) {
    case KK_CAPS: return check_arrays(f, 21, 0, 4);
    case KK_STATE: return check_arrays(f, 4, 1, 3);
    case KK_COMMAND: return parse_command(f, msg);
    default: break;
    }
    long size = fixed_size(f->type);
    if (size < 0) {
        return KK_ERR_MESSAGE;
    }
    if (f->body_len != (size_t)size) {
        return KK_ERR_LENGTH;
    }
    if (f->type == KK_HELLO) {
        msg->u.hello.command_period_us = kk_get_u32(f->body);
        msg->u.hello.state_period_us = kk_get_u32(f->body + 4);
    } else if (f->type == KK_ARM) {
        msg->u.arm.arm_id = kk_get_u16(f->body);
    }
    return KK_OK;
}

static size_t put_array(uint8_t *p, const float *a, uint8_t n) {
    for (uint8_t i = 0; i < n; i++) {
        kk_put_f32(p + 4u * i, a[i]);
    }
    return 4u * n;
}

size_t kk_body_caps(uint8_t *body, uint8_t n, uint32_t joint_hash, uint32_t servo_us,
                    uint32_t command_us, uint32_t state_us, uint32_t watchdog_us,
                    const float *lower, const float *upper, const float *velocity,
                    const float *effort) {
    body[0] = n;
    kk_put_u32(body + 1, joint_hash);
    kk_put_u32(body + 5, servo_us);
    kk_put_u32(body + 9, command_us);
    kk_put_u32(body + 13, state_us);
    kk_put_u32(body + 17, watchdog_us);
    size_t at = 21;
    at += put_array(body + at, lower, n);
    at += put_array(body + at, upper, n);
    at += put_array(body + at, velocity, n);
    at += put_array(body + at, effort, n);
    return at;
}

size_t kk_body_state(uint8_t *body, uint8_t status, uint8_t n, uint16_t last_cmd_seq,
                     const float *q, const float *dq, const float *effort) {
    body[0] = status;
    body[1] = n;
    kk_put_u16(body + 2, last_cmd_seq);
    size_t at = 4;
    at += put_array(body + at, q, n);
    at += put_array(body + at, dq, n);
    at += put_array(body + at, effort, n);
    return at;
}

size_t kk_body_fault(uint8_t *body, uint16_t code, uint16_t fault_id, uint32_t detail) {
    kk_put_u16(body, code);
    kk_put_u16(body + 2, fault_id);
    kk_put_u32(body + 4, detail);
    return 8;
}

size_t kk_body_ack(uint8_t *body, uint8_t acked_type, uint16_t acked_seq, uint8_t result) {
    body[0] = acked_type;
    kk_put_u16(body + 1, acked_seq);
    body[3] = result;
    return 4;
}
