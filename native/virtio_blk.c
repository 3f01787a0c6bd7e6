/*
 * virtio_blk.c - virtio block device backed by a raw image file.
 *
 * Request: a 16-byte header (type, reserved, sector) in device-readable
 * buffers, the data, and a one-byte status as the last device-writable
 * byte.  Every request is checked against the image size before any I/O;
 * a request that is merely wrong (past the end, write to a read-only disk,
 * unknown type) fails with IOERR/UNSUPP, a chain that breaks the ring rules
 * breaks the device (DEVICE_NEEDS_RESET).  FLUSH is fdatasync().
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "virtio.h"

#define VIRTIO_BLK_F_SEG_MAX (1ULL << 2)
#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define BLK_QUEUE_SIZE 128
#define SECTOR 512ULL

static void blk_cfg_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t size)
{
    struct virtio_blk *b = (struct virtio_blk *)d;
    uint8_t cfg[24] = {0};
    memcpy(&cfg[0], &b->capacity, 8);      /* capacity */
    uint32_t size_max = 0, seg_max = VIRTQ_MAX_CHAIN - 2, blk_size = SECTOR;
    memcpy(&cfg[8], &size_max, 4);
    memcpy(&cfg[12], &seg_max, 4);
    memcpy(&cfg[20], &blk_size, 4);        /* after geometry (16..19) */
    for (uint32_t i = 0; i < size; i++)
        data[i] = off + i < sizeof(cfg) ? cfg[off + i] : 0;
}

/* Full transfer or an error (short reads past EOF cannot happen: checked). */
static int do_io(int fd, int write, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = write ? pwritev(fd, iov, n, (off_t)off) : preadv(fd, iov, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return -1;
        off += (uint64_t)r;
        while (n > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

/* Handle one request; returns bytes written into the chain, or -1 if the
 * chain's layout is unusable (the device breaks). */
static int64_t handle(struct virtio_blk *b, const struct virtq_chain *c)
{
    uint8_t hdr[16];
    if (c->out_bytes < sizeof(hdr) || c->in_bytes < 1 ||
        virtq_chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
        return -1;
    uint32_t type;
    uint64_t sector;
    memcpy(&type, &hdr[0], 4);
    memcpy(&sector, &hdr[8], 8);
    uint64_t status_off = c->in_bytes - 1;
    uint8_t status = VIRTIO_BLK_S_OK;
    uint64_t written = 1;
    struct iovec v[VIRTQ_MAX_CHAIN];

    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        int is_out = type == VIRTIO_BLK_T_OUT;
        uint64_t len = is_out ? c->out_bytes - sizeof(hdr) : c->in_bytes - 1;
        if (len % SECTOR || sector > b->capacity || len / SECTOR > b->capacity - sector) {
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        if (is_out && b->read_only) {
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        int n = is_out ? virtq_chain_slice(c, 0, sizeof(hdr), len, v, VIRTQ_MAX_CHAIN)
                       : virtq_chain_slice(c, 1, 0, len, v, VIRTQ_MAX_CHAIN);
        if (len && do_io(b->fd, is_out, v, n, sector * SECTOR) < 0) {
            status = VIRTIO_BLK_S_IOERR;
            break;
        }
        if (is_out) {
            b->dev.stats.bytes_written += len;
        } else {
            b->dev.stats.bytes_read += len;
            written += len;
        }
        break;
    }
    case VIRTIO_BLK_T_FLUSH:
        if (!b->read_only && fdatasync(b->fd) < 0)
            status = VIRTIO_BLK_S_IOERR;
        break;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t n = c->in_bytes - 1 < sizeof(b->serial) ? c->in_bytes - 1 : sizeof(b->serial);
        virtq_chain_write(c, 0, b->serial, n);
        written += n;
        break;
    }
    default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    virtq_chain_write(c, status_off, &status, 1);
    return (int64_t)written;
}

void virtio_blk_process(struct virtio_blk *b)
{
    struct virtio_dev *d = &b->dev;
    struct virtq *q = &d->vq[0];
    struct virtq_chain c;
    int done = 0;
    /* at most one queue's worth per notify: another vCPU refilling the ring
     * cannot keep this one in the device forever (the driver notifies again) */
    for (uint32_t budget = q->size; budget > 0; budget--) {
        int r = virtq_pop(q, &d->mem, &c);
        if (r == 0)
            break;
        if (r < 0) {
            virtio_dev_error(d, "virtio-blk request queue", -r);
            break;
        }
        d->stats.requests++;
        int64_t w = handle(b, &c);
        if (w < 0) {
            q->broken = VIRTQ_E_LAYOUT;
            virtio_dev_error(d, "virtio-blk request", VIRTQ_E_LAYOUT);
            break;
        }
        virtq_push(q, c.head, (uint32_t)w);
        done++;
    }
    if (done)
        virtio_queue_irq(d, 0);
}

static void blk_notify(struct virtio_dev *d, uint16_t queue)
{
    if (queue == 0)
        virtio_blk_process((struct virtio_blk *)d);
}

static const struct virtio_ops blk_ops = {
    .notify = blk_notify,
    .cfg_read = blk_cfg_read,
};

int virtio_blk_init(struct virtio_blk *b, int fd, int read_only, const struct vm_events *ev,
                    const struct virtq_mem *mem, int vm_fd, uint32_t irq, char *err,
                    size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "disk: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        snprintf(err, errlen, "disk: not a regular file or block device");
        return -1;
    }
    off_t size = S_ISBLK(st.st_mode) ? lseek(fd, 0, SEEK_END) : st.st_size;
    if (size < 0) {
        snprintf(err, errlen, "disk: cannot size: %s", strerror(errno));
        return -1;
    }
    b->fd = fd;
    b->read_only = read_only;
    b->capacity = (uint64_t)size / SECTOR;
    snprintf(b->serial, sizeof(b->serial), "appliance%lu", (unsigned long)st.st_ino % 1000000);
    uint64_t features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
                        (read_only ? VIRTIO_BLK_F_RO : 0);
    virtio_dev_init(&b->dev, VIRTIO_ID_BLOCK, 1, BLK_QUEUE_SIZE, features, &blk_ops, ev, mem,
                    vm_fd, irq);
    return 0;
}
