/* The portable servo loop: see kk_app.h. */
#include "kk_app.h"

#include "kk_hal.h"

static void uart_tx(void *ctx, const uint8_t *frame, size_t len) {
    (void)ctx;
    kk_hal_uart_write(frame, len);
}

int kk_app_init(kk_core_t *core, const kk_limits_t *limits) {
    float q[KK_MAX_JOINTS], dq[KK_MAX_JOINTS], effort[KK_MAX_JOINTS];
    kk_hal_read_joints(q, dq, effort);
    if (kk_core_init(core, limits, uart_tx, NULL, q) != 0) {
        return -1;
    }
    kk_hal_write_joints(core->q_ref, core->v_ref, core->tau_ff);
    return 0;
}

void kk_app_servo_step(kk_core_t *core) {
    float q[KK_MAX_JOINTS], dq[KK_MAX_JOINTS], effort[KK_MAX_JOINTS];
    uint8_t rx[64];
    uint32_t t = kk_hal_time_us();
    kk_hal_read_joints(q, dq, effort);
    size_t n;
    while ((n = kk_hal_uart_read(rx, sizeof rx)) > 0) {
        kk_core_receive(core, rx, n, t, q, dq);
    }
    kk_core_tick(core, t, q, dq, effort);
    kk_hal_write_joints(core->q_ref, core->v_ref, core->tau_ff);
}
