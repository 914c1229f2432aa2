/* Power-on self-test of the core: a scripted session (HELLO, ARM, COMMAND, HEARTBEAT,
 * ESTOP, ticks through the stop) on a scratch core, checking each answer.  Run it before
 * kk_app_init: it also brings every code path of a session into the instruction cache (or,
 * under QEMU, into the translation cache, so the first real session runs at full speed). */
#ifndef KK_SELFTEST_H
#define KK_SELFTEST_H

#include "kk_core.h"

/* Returns 0 when every answer was right, else the number of the first failed check. */
int kk_core_selftest(kk_core_t *scratch, const kk_limits_t *limits, const float *q);

#endif
