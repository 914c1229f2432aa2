/* The portable servo loop: one call per servo period does receive, protocol, watchdog, stop
 * and drive output through the HAL (kk_hal.h). */
#ifndef KK_APP_H
#define KK_APP_H

#include "kk_core.h"

/* Power-up: reads the joints once and starts the core DISARMED, holding there.  Returns 0,
 * or -1 for unusable limits. */
int kk_app_init(kk_core_t *core, const kk_limits_t *limits);

/* One servo period: drain the UART, act on every frame, tick, write the joint reference. */
void kk_app_servo_step(kk_core_t *core);

#endif
