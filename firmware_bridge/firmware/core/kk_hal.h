/* The hardware-abstraction layer a port implements (docs/firmware.md).  Everything the
 * portable servo loop (kk_app.c) needs from a board: a microsecond clock, the joints, and the
 * UART.  All functions are called from the servo loop only, never from an interrupt. */
#ifndef KK_HAL_H
#define KK_HAL_H

#include <stddef.h>
#include <stdint.h>

/* The MCU clock, µs since power-up, wrapping at 2^32.  Sampled once per servo period; a
 * port on a timer grid returns the grid time (tick count x period) so the watchdog trips on
 * the servo grid. */
uint32_t kk_hal_time_us(void);

/* Measured joint state, n values each: rad or m, rad/s or m/s, N*m or N. */
void kk_hal_read_joints(float *q, float *dq, float *effort);

/* The servo reference for this period: position, velocity feed-forward and effort
 * feed-forward (already inside the limits), n values each.  The drive tracks it until the
 * next call. */
void kk_hal_write_joints(const float *q_ref, const float *v_ref, const float *tau_ff);

/* Received bytes not yet consumed (from the RX interrupt's ring or DMA buffer); never
 * blocks; returns how many were copied. */
size_t kk_hal_uart_read(uint8_t *buf, size_t max);

/* Queue bytes for transmission without waiting on the line (a TX ring drained by the TX
 * interrupt or DMA).  When the queue is full (nobody reading), drop bytes and count them:
 * the receiver counts the broken frame, as it would on a noisy line. */
void kk_hal_uart_write(const uint8_t *buf, size_t n);

#endif
