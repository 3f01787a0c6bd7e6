/*
 * virtq.c - split virtqueue: ring mapping, chain walking, used ring.
 *
 * The guest owns the rings and may change them at any time, so each
 * descriptor is copied once into a local before it is checked and used,
 * indices are reduced modulo the queue size only after being checked, and
 * a chain may visit at most min(size, VIRTQ_MAX_CHAIN) descriptors (a loop
 * is therefore caught, never followed).  Any violation marks the queue
 * broken; the transport then reports DEVICE_NEEDS_RESET.
 */
#include <string.h>

#include "virtq.h"

const char *virtq_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case VIRTQ_OK: return "ok";
    case VIRTQ_E_RING_ADDR: return "ring outside guest RAM or misaligned";
    case VIRTQ_E_AVAIL_IDX: return "available index moved by more than the queue size";
    case VIRTQ_E_HEAD: return "chain head index out of range";
    case VIRTQ_E_NEXT: return "descriptor next index out of range";
    case VIRTQ_E_LOOP: return "descriptor chain too long (loop)";
    case VIRTQ_E_DESC_ADDR: return "descriptor buffer outside guest RAM";
    case VIRTQ_E_TOO_LONG: return "request larger than the device accepts";
    case VIRTQ_E_INDIRECT: return "indirect descriptor not negotiated";
    case VIRTQ_E_ORDER: return "device-readable descriptor after a writable one";
    case VIRTQ_E_LAYOUT: return "request layout invalid for the device";
    default: return "unknown virtqueue error";
    }
}

void virtq_reset(struct virtq *q, uint16_t max_size)
{
    memset(q, 0, sizeof(*q));
    q->size = max_size;
    q->msix_vector = 0xffff;
}

int virtq_enable(struct virtq *q, const struct virtq_mem *m)
{
    uint64_t n = q->size;
    q->enabled = 0;
    q->desc = NULL;
    q->avail = NULL;
    q->used = NULL;
    q->last_avail = q->used_idx = 0;
    q->broken = 0;
    /* power of two, 1..VIRTQ_MAX_SIZE; natural alignments of section 2.7 */
    if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)) || (q->desc_gpa & 15) ||
        (q->avail_gpa & 1) || (q->used_gpa & 3))
        goto bad;
    q->desc = m->xlate(m->ctx, q->desc_gpa, 16 * n);
    q->avail = m->xlate(m->ctx, q->avail_gpa, 6 + 2 * n);
    q->used = m->xlate(m->ctx, q->used_gpa, 6 + 8 * n);
    if (q->desc == NULL || q->avail == NULL || q->used == NULL)
        goto bad;
    /* the driver may have used the queue before a reset: start from its used idx */
    q->used_idx = __atomic_load_n((uint16_t *)(q->used + 2), __ATOMIC_ACQUIRE);
    q->last_avail = q->used_idx;
    q->enabled = 1;
    return 0;
bad:
    q->desc = NULL;
    q->avail = NULL;
    q->used = NULL;
    q->broken = VIRTQ_E_RING_ADDR;
    return -VIRTQ_E_RING_ADDR;
}

static int fail(struct virtq *q, int err)
{
    q->broken = err;
    return -err;
}

int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c)
{
    if (q->broken)
        return -q->broken;
    if (!q->enabled)
        return 0;
    uint16_t avail_idx = __atomic_load_n((uint16_t *)&q->avail[1], __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size)
        return fail(q, VIRTQ_E_AVAIL_IDX);

    uint16_t head = __atomic_load_n((uint16_t *)&q->avail[2 + q->last_avail % q->size],
                                    __ATOMIC_RELAXED);
    if (head >= q->size)
        return fail(q, VIRTQ_E_HEAD);

    memset(c, 0, offsetof(struct virtq_chain, iov));
    c->head = head;
    uint32_t limit = q->size < VIRTQ_MAX_CHAIN ? q->size : VIRTQ_MAX_CHAIN;
    uint32_t n = 0;
    uint64_t total = 0;
    uint16_t idx = head;
    for (;;) {
        struct virtq_desc d;
        memcpy(&d, &q->desc[idx], sizeof(d)); /* one read: the guest may change it */
        if (n >= limit)
            return fail(q, VIRTQ_E_LOOP);
        if (d.flags & VIRTQ_DESC_F_INDIRECT)
            return fail(q, VIRTQ_E_INDIRECT);
        if (d.len > VIRTQ_MAX_BYTES || total + d.len > VIRTQ_MAX_BYTES)
            return fail(q, VIRTQ_E_TOO_LONG);
        void *p = m->xlate(m->ctx, d.addr, d.len);
        if (p == NULL)
            return fail(q, VIRTQ_E_DESC_ADDR);
        if (d.flags & VIRTQ_DESC_F_WRITE) {
            c->n_in++;
            c->in_bytes += d.len;
        } else {
            if (c->n_in)
                return fail(q, VIRTQ_E_ORDER);
            c->n_out++;
            c->out_bytes += d.len;
        }
        c->iov[n].iov_base = p;
        c->iov[n].iov_len = d.len;
        n++;
        total += d.len;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= q->size)
            return fail(q, VIRTQ_E_NEXT);
        idx = d.next;
    }
    q->last_avail++;
    return 1;
}

void virtq_unpop(struct virtq *q)
{
    q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    if (!q->enabled || q->used == NULL)
        return;
    volatile uint8_t *elem = q->used + 4 + 8 * (uint64_t)(q->used_idx % q->size);
    uint32_t id = head;
    memcpy((void *)elem, &id, 4);
    memcpy((void *)(elem + 4), &written, 4);
    q->used_idx++;
    __atomic_store_n((uint16_t *)(q->used + 2), q->used_idx, __ATOMIC_RELEASE);
}

int virtq_wants_irq(const struct virtq *q)
{
    if (!q->enabled || q->avail == NULL)
        return 0;
    return !(__atomic_load_n((uint16_t *)&q->avail[0], __ATOMIC_ACQUIRE) &
             VIRTQ_AVAIL_F_NO_INTERRUPT);
}

int virtq_chain_slice(const struct virtq_chain *c, int in, uint64_t off, uint64_t len,
                      struct iovec *out, int max)
{
    uint32_t first = in ? c->n_out : 0, end = in ? c->n_out + c->n_in : c->n_out;
    int k = 0;
    for (uint32_t i = first; i < end && len && k < max; i++) {
        uint64_t l = c->iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        uint64_t take = l - off < len ? l - off : len;
        out[k].iov_base = (uint8_t *)c->iov[i].iov_base + off;
        out[k].iov_len = take;
        k++;
        len -= take;
        off = 0;
    }
    return k;
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
    struct iovec v[VIRTQ_MAX_CHAIN];
    int k = virtq_chain_slice(c, 0, off, len, v, VIRTQ_MAX_CHAIN);
    uint64_t done = 0;
    for (int i = 0; i < k; i++) {
        memcpy((uint8_t *)dst + done, v[i].iov_base, v[i].iov_len);
        done += v[i].iov_len;
    }
    return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src,
                           uint64_t len)
{
    struct iovec v[VIRTQ_MAX_CHAIN];
    int k = virtq_chain_slice(c, 1, off, len, v, VIRTQ_MAX_CHAIN);
    uint64_t done = 0;
    for (int i = 0; i < k; i++) {
        memcpy(v[i].iov_base, (const uint8_t *)src + done, v[i].iov_len);
        done += v[i].iov_len;
    }
    return done;
}
