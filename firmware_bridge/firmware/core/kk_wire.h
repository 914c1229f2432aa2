/* Byte level of the Karakuri wire protocol v1 (docs/wire-protocol.md sections 2.1-2.4):
 * COBS, CRC-32/ISO-HDLC, little-endian fields and a stream decoder that splits at 0x00 and
 * runs the receive checks in the spec's order.  C99, no heap, only <stdint.h>/<string.h>. */
#ifndef KK_WIRE_H
#define KK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define KK_PROTOCOL_VERSION 1u
#define KK_HEADER_SIZE 8u
#define KK_CRC_SIZE 4u
#define KK_MAX_PAYLOAD 1024u                                  /* header + body + CRC */
#define KK_MAX_ENCODED (KK_MAX_PAYLOAD + KK_MAX_PAYLOAD / 254u + 1u) /* 1029, no delimiter */
#define KK_MAX_BODY (KK_MAX_PAYLOAD - KK_HEADER_SIZE - KK_CRC_SIZE)

/* Why a frame was dropped (the spec's counter names). */
typedef enum {
    KK_OK = 0,
    KK_ERR_LENGTH = 1,  /* over-long, broken COBS, payload size, body size */
    KK_ERR_CRC = 2,
    KK_ERR_VERSION = 3,
    KK_ERR_MESSAGE = 4  /* unknown type or an undefined field value */
} kk_err_t;

size_t kk_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst);
/* Returns the decoded length, or -1 when a code byte is 0 or points past the end. */
long kk_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst);
uint32_t kk_crc32(const uint8_t *p, size_t n);

uint16_t kk_get_u16(const uint8_t *p);
uint32_t kk_get_u32(const uint8_t *p);
float kk_get_f32(const uint8_t *p);
void kk_put_u16(uint8_t *p, uint16_t v);
void kk_put_u32(uint8_t *p, uint32_t v);
void kk_put_f32(uint8_t *p, float v);
int kk_isfinite(float v); /* bit test: no libm call, safe under -ffast-math */

/* A good payload: header fields and a pointer to the body inside the decoder's buffer. */
typedef struct {
    uint8_t type;
    uint16_t seq;
    uint32_t time_us;
    const uint8_t *body;
    size_t body_len;
} kk_frame_t;

typedef struct {
    uint32_t frames;         /* frames that passed every check */
    uint32_t crc_errors;
    uint32_t length_errors;
    uint32_t version_errors;
    uint32_t message_errors;
    uint32_t bytes;
} kk_decoder_stats_t;

/* Splits a byte stream at 0x00; feed it one byte at a time (from the UART ring). */
typedef struct {
    uint8_t buf[KK_MAX_ENCODED];
    uint8_t payload[KK_MAX_PAYLOAD];
    size_t len;
    int overflow;
    kk_decoder_stats_t stats;
} kk_decoder_t;

void kk_decoder_init(kk_decoder_t *d);
/* Adds one byte; returns 1 and fills *out when it completes a frame that passed checks 1-5
 * (framing, CRC, version).  Checks 6-7 (type and body) are the caller's: see kk_msg_check
 * and kk_decoder_count. */
int kk_decoder_push(kk_decoder_t *d, uint8_t byte, kk_frame_t *out);
/* Checks 1-5 on one stuffed frame without its delimiter (used by kk_decoder_push). */
kk_err_t kk_decode_stuffed(const uint8_t *src, size_t n, uint8_t *payload, kk_frame_t *out);
void kk_decoder_count(kk_decoder_t *d, kk_err_t err);

/* Writes header, body and CRC into payload (KK_MAX_PAYLOAD bytes), returns its length or 0
 * when the body is too long. */
size_t kk_build_payload(uint8_t type, uint16_t seq, uint32_t time_us, const uint8_t *body,
                        size_t body_len, uint8_t *payload);
/* COBS-stuffs a payload and appends the 0x00; frame needs KK_MAX_ENCODED + 1 bytes. */
size_t kk_frame_payload(const uint8_t *payload, size_t n, uint8_t *frame);

/* Sequence numbers run 1..65535 and wrap to 1: 0 is never sent, so it can mean "none". */
uint16_t kk_seq_next(uint16_t seq);
/* How far seq is ahead of last on the 1..65535 cycle: 0 duplicate, 1 next, >= 32768 older. */
uint16_t kk_seq_distance(uint16_t seq, uint16_t last);

/* Sequence tracking of the peer's frames (section 2.4). */
typedef struct {
    uint32_t gaps, duplicates, reordered;
    uint16_t last;
    int have_last;
} kk_seq_t;

/* Records seq; returns how many frames went missing just before it. */
uint32_t kk_seq_update(kk_seq_t *s, uint16_t seq);
/* A new session (HELLO): the next seq is not compared with the last. */
void kk_seq_restart(kk_seq_t *s);

#endif
