/* A single-producer single-consumer byte ring: the UART receive interrupt pushes, the servo
 * loop pops.  Lock-free on a single core (each index has one writer); size a power of two. */
#ifndef KK_RING_H
#define KK_RING_H

#include <stddef.h>
#include <stdint.h>

#define KK_RING_SIZE 2048u

typedef struct {
    uint8_t data[KK_RING_SIZE];
    volatile uint32_t head; /* written by the producer (ISR) */
    volatile uint32_t tail; /* written by the consumer (servo loop) */
    volatile uint32_t dropped;
} kk_ring_t;

/* Producer side (interrupt): returns 0 and counts a drop when full. */
static inline int kk_ring_push(kk_ring_t *r, uint8_t b) {
    uint32_t h = r->head;
    if (h - r->tail >= KK_RING_SIZE) {
        r->dropped++;
        return 0;
    }
    r->data[h & (KK_RING_SIZE - 1u)] = b;
    r->head = h + 1u;
    return 1;
}

/* Consumer side: copies up to max bytes out; returns how many. */
static inline size_t kk_ring_pop(kk_ring_t *r, uint8_t *dst, size_t max) {
    uint32_t t = r->tail, h = r->head;
    size_t n = 0;
    while (t != h && n < max) {
        dst[n++] = r->data[t & (KK_RING_SIZE - 1u)];
        t++;
    }
    r->tail = t;
    return n;
}

#endif
