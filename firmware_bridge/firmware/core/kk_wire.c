/* COBS, CRC-32, little-endian fields and the stream decoder: see kk_wire.h. */
#include "kk_wire.h"

#include <string.h>

size_t kk_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst) {
    size_t code_at = 0, out = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
            continue;
        }
        dst[out++] = src[i];
        if (++code == 0xFF) {
            dst[code_at] = code;
            code_at = out;
            code = 1;
            if (i + 1 < n) {
                out++;
            } else {
                return out; /* canonical: no empty block after a final 0xFF block */
            }
        }
    }
    dst[code_at] = code;
    return out;
}

long kk_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst) {
    size_t i = 0, out = 0;
    while (i < n) {
        uint8_t code = src[i];
        if (code == 0 || i + code > n) {
            return -1;
        }
        for (size_t k = 1; k < code; k++) {
            if (src[i + k] == 0) {
                return -1;
            }
            dst[out++] = src[i + k];
        }
        i += code;
        if (code != 0xFF && i < n) {
            dst[out++] = 0;
        }
    }
    return (long)out;
}

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t b = 0; b < 256u; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }
        crc_table[b] = c;
    }
    crc_ready = 1;
}

uint32_t kk_crc32(const uint8_t *p, size_t n) {
    if (!crc_ready) {
        crc_init();
    }
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c = crc_table[(c ^ *p++) & 0xFFu] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

uint16_t kk_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

uint32_t kk_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

float kk_get_f32(const uint8_t *p) {
    uint32_t u = kk_get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void kk_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void kk_put_u32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(v >> (8 * k));
    }
}

void kk_put_f32(uint8_t *p, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    kk_put_u32(p, u);
}

int kk_isfinite(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7F800000u) != 0x7F800000u;
}

void kk_decoder_init(kk_decoder_t *d) { memset(d, 0, sizeof *d); }

void kk_decoder_count(kk_decoder_t *d, kk_err_t err) {
    switch (err) {
    case KK_ERR_LENGTH: d->stats.length_errors++; break;
    case KK_ERR_CRC: d->stats.crc_errors++; break;
    case KK_ERR_VERSION: d->stats.version_errors++; break;
    case KK_ERR_MESSAGE: d->stats.message_errors++; break;
    default: d->stats.frames++; break;
    }
}

kk_err_t kk_decode_stuffed(const uint8_t *src, size_t n, uint8_t *payload, kk_frame_t *out) {
    if (n > KK_MAX_ENCODED) {
        return KK_ERR_LENGTH;
    }
    long len = kk_cobs_decode(src, n, payload);
    if (len < 0) {
        return KK_ERR_LENGTH;
    }
    if ((size_t)len < KK_HEADER_SIZE + KK_CRC_SIZE || (size_t)len > KK_MAX_PAYLOAD) {
        return KK_ERR_LENGTH;
    }
    size_t data = (size_t)len - KK_CRC_SIZE;
    if (kk_get_u32(payload + data) != kk_crc32(payload, data)) {
        return KK_ERR_CRC;
    }
    if (payload[0] != KK_PROTOCOL_VERSION) {
        return KK_ERR_VERSION;
    }
    out->type = payload[1];
    out->seq = kk_get_u16(payload + 2);
    out->time_us = kk_get_u32(payload + 4);
    out->body = payload + KK_HEADER_SIZE;
    out->body_len = data - KK_HEADER_SIZE;
    return KK_OK;
}

int kk_decoder_push(kk_decoder_t *d, uint8_t byte, kk_frame_t *out) {
    d->stats.bytes++;
    if (byte != 0) {
        if (d->overflow) {
            return 0; /* the rest of an over-long frame, already counted */
        }
        if (d->len == KK_MAX_ENCODED) {
            kk_decoder_count(d, KK_ERR_LENGTH); /* no 0x00 in time: resynchronise */
            d->overflow = 1;
            d->len = 0;
            return 0;
        }
        d->buf[d->len++] = byte;
        return 0;
    }
    size_t n = d->len;
    int skip = d->overflow;
    d->len = 0;
    d->overflow = 0;
    if (skip || n == 0) {
        return 0; /* end of an over-long frame, or an empty frame */
    }
    kk_err_t err = kk_decode_stuffed(d->buf, n, d->payload, out);
    if (err != KK_OK) {
        kk_decoder_count(d, err);
        return 0;
    }
    return 1;
}

size_t kk_build_payload(uint8_t type, uint16_t seq, uint32_t time_us, const uint8_t *body,
                        size_t body_len, uint8_t *payload) {
    if (body_len > KK_MAX_BODY) {
        return 0;
    }
    payload[0] = KK_PROTOCOL_VERSION;
    payload[1] = type;
    kk_put_u16(payload + 2, seq);
    kk_put_u32(payload + 4, time_us);
    if (body_len) {
        memmove(payload + KK_HEADER_SIZE, body, body_len);
    }
    size_t n = KK_HEADER_SIZE + body_len;
    kk_put_u32(payload + n, kk_crc32(payload, n));
    return n + KK_CRC_SIZE;
}

size_t kk_frame_payload(const uint8_t *payload, size_t n, uint8_t *frame) {
    size_t len = kk_cobs_encode(payload, n, frame);
    frame[len] = 0;
    return len + 1;
}

uint16_t kk_seq_next(uint16_t seq) { return (uint16_t)(seq % 0xFFFFu + 1u); }

uint16_t kk_seq_distance(uint16_t seq, uint16_t last) {
    return (uint16_t)(((uint32_t)seq + 0xFFFFu - last) % 0xFFFFu);
}

void kk_seq_restart(kk_seq_t *s) { s->have_last = 0; }

uint32_t kk_seq_update(kk_seq_t *s, uint16_t seq) {
    if (!s->have_last) {
        s->have_last = 1;
        s->last = seq;
        return 0;
    }
    uint16_t diff = kk_seq_distance(seq, s->last);
    if (diff == 0) {
        s->duplicates++;
        return 0;
    }
    if (diff >= 0x8000u) {
        s->reordered++;
        return 0;
    }
    s->last = seq;
    s->gaps += (uint32_t)diff - 1u;
    return (uint32_t)diff - 1u;
}
