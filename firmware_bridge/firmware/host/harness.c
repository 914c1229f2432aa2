/* A line-oriented harness around the C core for the host tests (tests/firmware/).  Reads
 * commands on stdin, answers on stdout; floats travel as the 8 hex digits of their IEEE-754
 * binary32 bits so nothing is lost in printing.  Built with ASan and UBSan.
 *
 *   CRC <hex>                          -> crc32 as 8 hex digits
 *   COBSE <hex> | COBSD <hex>          -> stuffed / unstuffed hex, or ERR
 *   DEC <stuffed hex, no delimiter>    -> OK <type> <seq> <time_us> <fields...> | ERR <kind>
 *   CAPS|STATE|FAULT|ACK <seq> <time_us> <fields...>  -> frame hex (delimiter included)
 *   INIT <n> <servo_us> <state_us> <hash> <lower..> <upper..> <vel..> <eff..> <decel..> <q..>
 *   RX <t_us> <q..> <dq..> <hex|->     -> F <frame hex> lines, then "."
 *   TICK <t_us> <q..> <dq..> <eff..>   -> F <frame hex> lines, then "."
 *   SELFTEST                           -> kk_core_selftest on the INIT limits: 0 = pass
 *   DUMP                               -> S <mode> <status> <last_cmd_seq> <counters..>
 *                                         <q_ref..> <v_ref..> <tau_ff..>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kk_core.h"
#include "kk_selftest.h"

static char line[1 << 17];
static uint8_t bytes[1 << 16], out[1 << 16];
static kk_core_t core;

static size_t unhex(const char *s, uint8_t *dst) {
    size_t n = 0;
    if (!s || strcmp(s, "-") == 0) {
        return 0;
    }
    for (; s[0] && s[1]; s += 2) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) {
            break;
        }
        dst[n++] = (uint8_t)v;
    }
    return n;
}

static void puthex(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
}

static unsigned long num(void) {
    const char *t = strtok(NULL, " \n");
    return t ? strtoul(t, NULL, 0) : 0ul;
}

static float f32(void) {
    uint32_t u = (uint32_t)strtoul(strtok(NULL, " \n"), NULL, 16);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void floats(float *a, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        a[i] = f32();
    }
}

static void putf(const float *a, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &a[i], sizeof u);
        printf(" %08x", (unsigned)u);
    }
}

static void emit(void *ctx, const uint8_t *frame, size_t len) {
    (void)ctx;
    printf("F ");
    puthex(frame, len);
    printf("\n");
}


static void encode_msg(const char *cmd) {
    static uint8_t body[KK_MAX_BODY], payload[KK_MAX_PAYLOAD], frame[KK_MAX_ENCODED + 1];
    float a[4][KK_WIRE_MAX_JOINTS];
    uint16_t seq = (uint16_t)num();
    uint32_t t = (uint32_t)num();
    uint8_t type;
    size_t len;
    if (strcmp(cmd, "CAPS") == 0) {
        unsigned n = (unsigned)num();
        uint32_t h = (uint32_t)num(), s = (uint32_t)num(), c = (uint32_t)num();
        uint32_t st = (uint32_t)num(), w = (uint32_t)num();
        for (int k = 0; k < 4; k++) {
            floats(a[k], n);
        }
        type = KK_CAPS;
        len = kk_body_caps(body, (uint8_t)n, h, s, c, st, w, a[0], a[1], a[2], a[3]);
    } else if (strcmp(cmd, "STATE") == 0) {
        uint8_t status = (uint8_t)num();
        unsigned n = (unsigned)num();
        uint16_t last = (uint16_t)num();
        for (int k = 0; k < 3; k++) {
            floats(a[k], n);
        }
        type = KK_STATE;
        len = kk_body_state(body, status, (uint8_t)n, last, a[0], a[1], a[2]);
    } else if (strcmp(cmd, "FAULT") == 0) {
        uint16_t code = (uint16_t)num(), id = (uint16_t)num();
        type = KK_FAULT;
        len = kk_body_fault(body, code, id, (uint32_t)num());
    } else {
        uint8_t at = (uint8_t)num();
        uint16_t as = (uint16_t)num();
        type = KK_ACK;
        len = kk_body_ack(body, at, as, (uint8_t)num());
    }
    size_t n = kk_build_payload(type, seq, t, body, len, payload);
    puthex(frame, kk_frame_payload(payload, n, frame));
    printf("\n");
}

static void decode(const char *hex) {
    static uint8_t payload[KK_MAX_PAYLOAD];
    static const char *names[] = {"ok", "length", "crc", "version", "message"};
    size_t n = unhex(hex, bytes);
    kk_frame_t f;
    kk_msg_t m;
    kk_err_t err = kk_decode_stuffed(bytes, n, payload, &f);
    if (err == KK_OK) {
        err = kk_msg_parse(&f, &m);
    }
    if (err != KK_OK) {
        printf("ERR %s\n", names[err]);
        return;
    }
    printf("OK %u %u %lu", f.type, f.seq, (unsigned long)f.time_us);
    if (f.type == KK_HELLO) {
        printf(" %lu %lu", (unsigned long)m.u.hello.command_period_us,
               (unsigned long)m.u.hello.state_period_us);
    } else if (f.type == KK_ARM) {
        printf(" %u", m.u.arm.arm_id);
    } else if (f.type == KK_COMMAND) {
        printf(" %u %u %u ", m.u.command.mode, m.u.command.flags, m.u.command.n);
        puthex(m.u.command.q, 4u * m.u.command.n);
        printf(" ");
        if (m.u.command.v) {
            puthex(m.u.command.v, 4u * m.u.command.n);
        } else {
            printf("-");
        }
        printf(" ");
        if (m.u.command.e) {
            puthex(m.u.command.e, 4u * m.u.command.n);
        } else {
            printf("-");
        }
    } else {
        printf(" ");
        puthex(f.body, f.body_len);
    }
    printf("\n");
}

static void dump(void) {
    const kk_counters_t *k = &core.counters;
    const uint32_t counters[] = {k->frames_rx, k->frames_tx, k->crc_errors, k->length_errors,
                                 k->other_errors, k->seq_gaps, k->commands_applied,
                                 k->commands_ignored, k->commands_rejected, k->commands_stale,
                                 k->commands_clipped, k->watchdog_trips, k->estops,
                                 k->limit_faults};
    printf("S %d %u %u", (int)core.mode, kk_core_status(&core), core.last_cmd_seq);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        printf(" %lu", (unsigned long)counters[i]);
    }
    putf(core.q_ref, core.lim.n);
    putf(core.v_ref, core.lim.n);
    putf(core.tau_ff, core.lim.n);
    printf("\n");
}

int main(void) {
    float q[KK_MAX_JOINTS], dq[KK_MAX_JOINTS], eff[KK_MAX_JOINTS];
    unsigned n = 0;
    while (fgets(line, sizeof line, stdin)) {
        char *cmd = strtok(line, " \n");
        if (!cmd) {
            continue;
        }
        if (strcmp(cmd, "CRC") == 0) {
            size_t len = unhex(strtok(NULL, " \n"), bytes);
            printf("%08lx\n", (unsigned long)kk_crc32(bytes, len));
        } else if (strcmp(cmd, "COBSE") == 0) {
            size_t len = unhex(strtok(NULL, " \n"), bytes);
            puthex(out, kk_cobs_encode(bytes, len, out));
            printf("\n");
        } else if (strcmp(cmd, "COBSD") == 0) {
            size_t len = unhex(strtok(NULL, " \n"), bytes);
            long got = kk_cobs_decode(bytes, len, out);
            if (got < 0) {
                printf("ERR\n");
            } else {
                puthex(out, (size_t)got);
                printf("\n");
            }
        } else if (strcmp(cmd, "DEC") == 0) {
            decode(strtok(NULL, " \n"));
        } else if (!strcmp(cmd, "CAPS") || !strcmp(cmd, "STATE") || !strcmp(cmd, "FAULT") ||
                   !strcmp(cmd, "ACK")) {
            encode_msg(cmd);
        } else if (strcmp(cmd, "INIT") == 0) {
            kk_limits_t lim;
            memset(&lim, 0, sizeof lim);
            n = (unsigned)num();
            n = n > KK_MAX_JOINTS ? KK_MAX_JOINTS : n;
            lim.n = (uint8_t)n;
            lim.servo_period_us = (uint32_t)num();
            lim.default_state_period_us = (uint32_t)num();
            lim.joint_hash = (uint32_t)num();
            floats(lim.lower, n);
            floats(lim.upper, n);
            floats(lim.velocity_limit, n);
            floats(lim.effort_limit, n);
            floats(lim.stop_decel, n);
            floats(q, n);
            printf("%d\n", kk_core_init(&core, &lim, emit, NULL, q));
        } else if (strcmp(cmd, "RX") == 0) {
            uint32_t t = (uint32_t)num();
            floats(q, n);
            floats(dq, n);
            size_t len = unhex(strtok(NULL, " \n"), bytes);
            kk_core_receive(&core, bytes, len, t, q, dq);
            printf(".\n");
        } else if (strcmp(cmd, "TICK") == 0) {
            uint32_t t = (uint32_t)num();
            floats(q, n);
            floats(dq, n);
            floats(eff, n);
            kk_core_tick(&core, t, q, dq, eff);
            printf(".\n");
        } else if (strcmp(cmd, "SELFTEST") == 0) {
            static kk_core_t scratch;
            kk_limits_t lim = core.lim;
            printf("%d\n", kk_core_selftest(&scratch, &lim, core.q_ref));
        } else if (strcmp(cmd, "DUMP") == 0) {
            dump();
        } else {
            printf("? %s\n", cmd);
        }
        fflush(stdout);
    }
    return 0;
}
