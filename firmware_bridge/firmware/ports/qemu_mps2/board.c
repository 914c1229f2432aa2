/* The QEMU mps2-an386 port: HAL on the CMSDK UARTs and SysTick, a simulated servo for the
 * joints, and the 1 kHz servo loop.
 *
 *   UART0 (0x40004000, IRQ 0): the wire protocol; `qemu-system-arm -serial pty` puts it on a
 *     host pty.  The RX interrupt moves bytes into a ring; the servo loop drains it.
 *   UART1 (0x40005000): a text console, one `KKSTAT ...` line every 250 ms with the core's
 *     counters and the servo-loop timing (the second `-serial`).
 *   Clock: the FPGA I/O block's COUNTER (0x40028018) prescaled to 1 MHz is kk_hal_time_us;
 *     QEMU derives it from its virtual clock, so it keeps time even when the emulator is
 *     descheduled (SysTick interrupts are then lost, not queued).
 *   SysTick: 1 ms from the 25 MHz CPU clock; its handler only counts and wakes the loop.
 *   Servo loop (thread mode): on each new millisecond of the clock, kk_app_servo_step (at
 *     the millisecond, the servo grid), then one step of the simulated drive.
 *   Loop time is measured with SysTick's current value (40 ns steps); QEMU implements no DWT
 *   cycle counter.  Run QEMU with -icount to make it an instruction count (docs/firmware.md). */
#include <stdint.h>

#include "industrial_arm.h"
#include "kk_app.h"
#include "kk_hal.h"
#include "kk_ring.h"
#include "kk_selftest.h"
#include "kk_servo_sim.h"

#define CPU_HZ 25000000u
#define SERVO_US 1000u
#define TICKS_PER_SERVO (CPU_HZ / 1000000u * SERVO_US)

#define REG(a) (*(volatile uint32_t *)(a))
#define UART0 0x40004000u
#define UART1 0x40005000u
#define UART_DATA(b) REG((b) + 0x0u)
#define UART_STATE(b) REG((b) + 0x4u)
#define UART_CTRL(b) REG((b) + 0x8u)
#define UART_INT(b) REG((b) + 0xCu)
#define UART_BAUDDIV(b) REG((b) + 0x10u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define NVIC_ISER0 REG(0xE000E100u)
#define FPGAIO_COUNTER REG(0x40028018u)
#define FPGAIO_PRESCALE REG(0x4002801Cu)

static kk_ring_t rx_ring, tx_ring; /* tx: filled by the servo loop, drained when idle */
static volatile uint32_t ms_ticks;
static uint32_t servo_us;    /* MCU time of this servo period, µs (a whole millisecond) */
static uint32_t servo_ticks; /* servo periods run */
static kk_servo_sim_t drive;
static kk_core_t core;

void SysTick_Handler(void) { ms_ticks++; }

/* Clear the interrupt before reading: a byte that lands after the last read raises it
 * again (cleared after, it would be lost with RX full, and the UART would stall). */
void Uart0Rx_Handler(void) {
    UART_INT(UART0) = 2u;
    while (UART_STATE(UART0) & 2u) {
        kk_ring_push(&rx_ring, (uint8_t)UART_DATA(UART0));
    }
}

/* ------------------------------------------------------------------ HAL */
uint32_t kk_hal_time_us(void) { return servo_us; }

static uint32_t clock_us(void) { return FPGAIO_COUNTER; }

void kk_hal_read_joints(float *q, float *dq, float *effort) {
    for (uint8_t i = 0; i < drive.n; i++) {
        q[i] = drive.q[i];
        dq[i] = drive.dq[i];
        effort[i] = drive.effort[i];
    }
}

static float ref_q[KK_MAX_JOINTS], ref_v[KK_MAX_JOINTS], ref_tau[KK_MAX_JOINTS];

void kk_hal_write_joints(const float *q_ref, const float *v_ref, const float *tau_ff) {
    for (uint8_t i = 0; i < drive.n; i++) {
        ref_q[i] = q_ref[i];
        ref_v[i] = v_ref[i];
        ref_tau[i] = tau_ff[i];
    }
}

size_t kk_hal_uart_read(uint8_t *buf, size_t max) {
    __asm volatile("cpsid i" ::: "memory"); /* also poll: a missed interrupt never stalls RX */
    Uart0Rx_Handler();
    __asm volatile("cpsie i" ::: "memory");
    return kk_ring_pop(&rx_ring, buf, max);
}

static void uart_put(uint32_t base, uint8_t b) {
    while (UART_STATE(base) & 1u) {
    }
    UART_DATA(base) = b;
}

/* Queues the frame; the idle loop moves it to the UART as it has room, so the servo loop
 * never waits on the line.  A full queue (nobody reading) drops bytes, as a line would. */
void kk_hal_uart_write(const uint8_t *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        kk_ring_push(&tx_ring, buf[i]);
    }
}

static void uart_tx_drain(void) {
    uint8_t b;
    while (!(UART_STATE(UART0) & 1u) && kk_ring_pop(&tx_ring, &b, 1)) {
        UART_DATA(UART0) = b;
    }
}

/* ------------------------------------------------------------------ console */
static void con_str(const char *s) {
    while (*s) {
        uart_put(UART1, (uint8_t)*s++);
    }
}

static void con_kv(const char *key, uint32_t v) {
    char digits[11];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    con_str(" ");
    con_str(key);
    con_str("=");
    while (n) {
        uart_put(UART1, (uint8_t)digits[--n]);
    }
}

static uint32_t loop_max, loop_last, overruns, max_step_ms, window_step_ms;

static void report(void) {
    const kk_counters_t *k = &core.counters;
    con_str("KKSTAT");
    con_kv("t_ms", servo_us / 1000u);
    con_kv("servo_periods", servo_ticks);
    con_kv("mode", (uint32_t)core.mode);
    con_kv("status", kk_core_status(&core));
    con_kv("frames_rx", k->frames_rx);
    con_kv("frames_tx", k->frames_tx);
    con_kv("crc_errors", k->crc_errors);
    con_kv("length_errors", k->length_errors);
    con_kv("other_errors", k->other_errors);
    con_kv("seq_gaps", k->seq_gaps);
    con_kv("commands_applied", k->commands_applied);
    con_kv("commands_ignored", k->commands_ignored);
    con_kv("commands_rejected", k->commands_rejected);
    con_kv("commands_stale", k->commands_stale);
    con_kv("commands_clipped", k->commands_clipped);
    con_kv("watchdog_trips", k->watchdog_trips);
    con_kv("estops", k->estops);
    con_kv("limit_faults", k->limit_faults);
    con_kv("rx_dropped", rx_ring.dropped);
    con_kv("tx_dropped", tx_ring.dropped);
    con_kv("overruns", overruns);
    con_kv("max_step_ms", max_step_ms);
    con_kv("window_step_ms", window_step_ms); /* largest step since the previous line */
    window_step_ms = 0;
    con_kv("loop_last_ticks", loop_last);
    con_kv("loop_max_ticks", loop_max);
    con_str("\n");
}

/* ------------------------------------------------------------------ main */
int main(void) {
    static const float lower[] = KK_ROBOT_LOWER, upper[] = KK_ROBOT_UPPER;
    static const float vel[] = KK_ROBOT_VELOCITY, eff[] = KK_ROBOT_EFFORT;
    static const float decel[] = KK_ROBOT_STOP_DECEL, home[] = KK_ROBOT_HOME;
    static const float inertia[] = KK_ROBOT_INERTIA, damping[] = KK_ROBOT_DAMPING;
    static const float kp[] = KK_ROBOT_KP, kd[] = KK_ROBOT_KD;
    kk_limits_t lim = {0};
    lim.n = KK_ROBOT_N;
    lim.joint_hash = KK_ROBOT_JOINT_HASH;
    lim.servo_period_us = SERVO_US;
    lim.default_state_period_us = 20000u;
    drive.n = KK_ROBOT_N;
    for (int i = 0; i < KK_ROBOT_N; i++) {
        lim.lower[i] = drive.lower[i] = lower[i];
        lim.upper[i] = drive.upper[i] = upper[i];
        lim.velocity_limit[i] = drive.velocity_limit[i] = vel[i];
        lim.effort_limit[i] = drive.effort_limit[i] = eff[i];
        lim.stop_decel[i] = decel[i];
        drive.q[i] = home[i];
        drive.kp[i] = kp[i];
        drive.kd[i] = kd[i];
        drive.damping[i] = damping[i];
        drive.inertia[i] = inertia[i];
    }
    UART_BAUDDIV(UART0) = 16u;
    UART_BAUDDIV(UART1) = 16u;
    UART_CTRL(UART1) = 1u;              /* TX */
    UART_CTRL(UART0) = 1u | 2u | 8u;    /* TX, RX, RX interrupt */
    NVIC_ISER0 = 1u << 0;               /* UART0 RX */
    con_str("KKBOOT karakuri reference firmware, wire protocol v1, mps2-an386\n");
    int failed = kk_core_selftest(&core, &lim, home);
    if (failed) {
        con_kv("KKERROR selftest_failed_check", (uint32_t)failed);
        con_str("\n");
        for (;;) {
        }
    }
    con_str("KKBOOT selftest ok\n");
    if (kk_app_init(&core, &lim) != 0) {
        con_str("KKERROR bad limits\n");
        for (;;) {
        }
    }
    FPGAIO_PRESCALE = CPU_HZ / 1000000u - 1u; /* COUNTER at 1 MHz */
    FPGAIO_COUNTER = 0u;
    SYST_RVR = TICKS_PER_SERVO - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* CPU clock, interrupt, enable */
    uint32_t last_ms = 0;
    for (;;) {
        uint32_t now_ms = clock_us() / SERVO_US;
        while (now_ms == last_ms) {
            uart_tx_drain();
            if (tx_ring.head == tx_ring.tail) {
                __asm volatile("wfi");
            }
            now_ms = clock_us() / SERVO_US;
        }
        uint32_t step = now_ms - last_ms;
        overruns += step - 1u; /* servo periods skipped (the emulator was descheduled) */
        max_step_ms = step > max_step_ms ? step : max_step_ms;
        window_step_ms = step > window_step_ms ? step : window_step_ms;
        last_ms = now_ms;
        servo_us = now_ms * SERVO_US;
        servo_ticks++;
        uint32_t start_ms, start_val, end_ms, end_val;
        do { /* a consistent (tick count, SysTick value) pair */
            start_ms = ms_ticks;
            start_val = SYST_CVR;
        } while (start_ms != ms_ticks);
        kk_app_servo_step(&core);
        kk_servo_sim_step(&drive, ref_q, ref_v, ref_tau, (float)(step * SERVO_US) * 1e-6f);
        do {
            end_ms = ms_ticks;
            end_val = SYST_CVR;
        } while (end_ms != ms_ticks);
        loop_last = (end_ms - start_ms) * TICKS_PER_SERVO + start_val - end_val;
        if ((int32_t)loop_last < 0) { /* SysTick reloaded, its interrupt not yet taken */
            loop_last += TICKS_PER_SERVO;
        }
        loop_max = loop_last > loop_max ? loop_last : loop_max;
        if (now_ms / 250u != (now_ms - step) / 250u) {
            report();
        }
    }
}
