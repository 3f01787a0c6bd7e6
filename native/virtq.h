/*
 * virtq.h - the split virtqueue (virtio 1.x, section 2.7) as the device sees
 * it, with every guest-provided index, address and length validated.
 *
 * Independent of the machine: guest memory is reached only through a
 * translate callback (guest physical -> host pointer or NULL), so the same
 * code runs in the monitor and in the fuzz harness (virtq_fuzz.c).
 */
#ifndef APPLIANCE_VIRTQ_H
#define APPLIANCE_VIRTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VIRTQ_MAX_SIZE 256      /* largest queue we offer */
#define VIRTQ_MAX_CHAIN 64      /* descriptors per request we accept */
#define VIRTQ_MAX_BYTES (4u << 20) /* bytes per request we accept */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Why a queue was declared broken (returned negated by virtq_pop). */
enum virtq_err {
    VIRTQ_OK = 0,
    VIRTQ_E_RING_ADDR = 1,    /* ring outside guest RAM or misaligned */
    VIRTQ_E_AVAIL_IDX = 2,    /* avail->idx moved by more than the queue size */
    VIRTQ_E_HEAD = 3,         /* head index >= queue size */
    VIRTQ_E_NEXT = 4,         /* next index >= queue size */
    VIRTQ_E_LOOP = 5,         /* chain longer than the queue / our limit (loop) */
    VIRTQ_E_DESC_ADDR = 6,    /* buffer outside guest RAM */
    VIRTQ_E_TOO_LONG = 7,     /* buffer or chain larger than VIRTQ_MAX_BYTES */
    VIRTQ_E_INDIRECT = 8,     /* indirect descriptor (not negotiated) */
    VIRTQ_E_ORDER = 9,        /* device-readable after device-writable */
    VIRTQ_E_LAYOUT = 10,      /* request layout wrong for the device */
};

typedef void *(*virtq_xlate_fn)(void *ctx, uint64_t gpa, uint64_t len);

struct virtq_mem {
    virtq_xlate_fn xlate;
    void *ctx;
};

struct virtq {
    /* set by the driver through the transport */
    uint16_t size;
    uint16_t msix_vector;
    int enabled;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* resolved at enable time (virtq_enable) */
    struct virtq_desc *desc;
    volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
    volatile uint8_t *used;     /* flags, idx, ring[size] of {id, len}, avail_event */
    uint16_t last_avail;
    uint16_t used_idx;
    int broken;                 /* non-zero: enum virtq_err, no more processing */
};

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* One request: the readable buffers first, then the writable ones. */
struct virtq_chain {
    uint16_t head;
    uint32_t n_out, n_in;       /* device-readable, device-writable iovecs */
    uint64_t out_bytes, in_bytes;
    struct iovec iov[VIRTQ_MAX_CHAIN]; /* [0, n_out) readable, then n_in writable */
};

const char *virtq_strerror(int err);
void virtq_reset(struct virtq *q, uint16_t max_size);
/* Validate and map the rings; returns 0 or -VIRTQ_E_RING_ADDR. */
int virtq_enable(struct virtq *q, const struct virtq_mem *m);
/* 1: a chain was taken, 0: nothing available, <0: -enum virtq_err (queue broken). */
int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c);
/* Put the last popped chain back (the device could not use it yet). */
void virtq_unpop(struct virtq *q);
/* Return a chain to the driver with `written` bytes written into it. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);
/* Does the driver want an interrupt now (VIRTQ_AVAIL_F_NO_INTERRUPT clear)? */
int virtq_wants_irq(const struct virtq *q);

/* Copy bytes [off, off+len) of the readable part of a chain; returns bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
/* Copy into the writable part at offset off; returns bytes copied. */
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src,
                           uint64_t len);
/* iovecs covering [off, off+len) of the readable (in=0) or writable (in=1)
 * part; returns how many were filled (at most max). */
int virtq_chain_slice(const struct virtq_chain *c, int in, uint64_t off, uint64_t len,
                      struct iovec *out, int max);

#endif
