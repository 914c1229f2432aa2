/* Power-on self-test: see kk_selftest.h. */
#include "kk_selftest.h"

#include <string.h>

typedef struct {
    uint8_t types[8];
    uint8_t last[8]; /* the last frame's 4-byte body head (ACK result at [3], STATE status at [0]) */
    int n;
} seen_t;

static uint8_t frame_buf[KK_MAX_ENCODED + 1];
static uint8_t payload[KK_MAX_PAYLOAD]; /* the host's frame, then each answer decoded */

static void record(void *ctx, const uint8_t *frame, size_t len) {
    seen_t *s = (seen_t *)ctx;
    kk_frame_t f;
    if (len < 2 || kk_decode_stuffed(frame, len - 1, payload, &f) != KK_OK || s->n >= 8) {
        s->n = 99;
        return;
    }
    s->types[s->n++] = f.type;
    memcpy(s->last, f.body, f.body_len < 8 ? f.body_len : 8);
}

static void host_send(kk_core_t *c, uint8_t type, uint16_t seq, const uint8_t *body,
                      size_t len, uint32_t t, const float *q, const float *dq) {
    size_t n = kk_build_payload(type, seq, t, body, len, payload);
    size_t f = kk_frame_payload(payload, n, frame_buf);
    kk_core_receive(c, frame_buf, f, t, q, dq);
}

int kk_core_selftest(kk_core_t *c, const kk_limits_t *lim, const float *q) {
    static const uint8_t check[] = "123456789";
    seen_t seen;
    float dq[KK_MAX_JOINTS] = {0}, eff[KK_MAX_JOINTS] = {0};
    uint8_t body[3 + 4 * KK_MAX_JOINTS];
    uint8_t n = lim->n;
    if (kk_crc32(check, 9) != 0xCBF43926u) {
        return 1;
    }
    memset(&seen, 0, sizeof seen);
    if (kk_core_init(c, lim, record, &seen, q) != 0) {
        return 2;
    }
    kk_put_u32(body, 20000u); /* HELLO: 50 Hz host, default STATE period */
    kk_put_u32(body + 4, 0u);
    host_send(c, KK_HELLO, 1, body, 8, 1000u, q, dq);
    if (seen.n != 1 || seen.types[0] != KK_CAPS) {
        return 3;
    }
    kk_put_u16(body, 7u); /* ARM #7 */
    host_send(c, KK_ARM, 2, body, 2, 2000u, q, dq);
    if (seen.n != 2 || seen.types[1] != KK_ACK || seen.last[3] != KK_ACK_OK || c->mode != KK_ARMED) {
        return 4;
    }
    body[0] = KK_MODE_POSITION; /* COMMAND: hold where it is */
    body[1] = 0;
    body[2] = n;
    for (uint8_t i = 0; i < n; i++) {
        kk_put_f32(body + 3 + 4u * i, q[i]);
    }
    host_send(c, KK_COMMAND, 3, body, 3u + 4u * n, 3000u, q, dq);
    host_send(c, KK_HEARTBEAT, 4, body, 0, 3000u, q, dq);
    kk_core_tick(c, 4000u, q, dq, eff);
    if (c->counters.commands_applied != 1 || seen.n != 4 || seen.types[3] != KK_STATE ||
        seen.last[0] != KK_ST_ARMED) {
        return 5;
    }
    host_send(c, KK_ESTOP, 5, body, 0, 5000u, q, dq);
    for (uint32_t t = 6000u; t < 20000u; t += 1000u) {
        kk_core_tick(c, t, q, dq, eff);
    }
    if (c->mode != KK_FAULTED || !(kk_core_status(c) & KK_ST_ESTOP)) {
        return 6;
    }
    return 0;
}
