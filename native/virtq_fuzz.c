/*
 * virtq_fuzz.c - fuzz harness for the virtqueue parser and virtio-blk
 * request handling, built only for the tests (native/virtq_fuzz_build.py,
 * with AddressSanitizer and coverage).
 *
 * One input = a guest memory image (held in a malloc'd buffer of exactly
 * its size, so ASan sees any access outside it) plus a stream of BAR0
 * accesses (8 bytes each: u16 offset, u8 size, u8 flags, u32 value) that
 * the harness feeds to the transport exactly as vCPU exits would, ending
 * with notifications of queue 0.  The disk is a 16-sector memfd.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio.h"
#include "virtq_fuzz.h"

#define FUZZ_DISK_SECTORS 16

struct fuzz_mem {
    uint8_t *mem;
    uint64_t len;
};

static void *fuzz_xlate(void *ctx, uint64_t gpa, uint64_t len)
{
    const struct fuzz_mem *m = ctx;
    if (gpa + len < gpa || gpa + len > m->len)
        return NULL;
    return m->mem + gpa;
}

static void no_irq(void *ctx, uint32_t irq, int level)
{
    (void)ctx;
    (void)irq;
    (void)level;
}

static int disk_fd = -1;

int virtq_fuzz_one(const uint8_t *mem, size_t mem_len, const uint8_t *ops, size_t ops_len,
                   int read_only, struct virtq_fuzz_result *res)
{
    if (disk_fd < 0) {
        disk_fd = memfd_create("virtq-fuzz-disk", MFD_CLOEXEC);
        if (disk_fd < 0 || ftruncate(disk_fd, FUZZ_DISK_SECTORS * 512) < 0)
            return -1;
    }
    struct fuzz_mem m = {.mem = malloc(mem_len ? mem_len : 1), .len = mem_len};
    if (m.mem == NULL)
        return -1;
    memcpy(m.mem, mem, mem_len);
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        free(m.mem);
        return -1;
    }
    struct vm_events ev = {.set_irq = no_irq};
    struct virtq_mem vmem = {.xlate = fuzz_xlate, .ctx = &m};
    char err[128];
    int r = virtio_blk_init(b, disk_fd, read_only, &ev, &vmem, -1, 16, err, sizeof(err));
    if (r == 0) {
        b->dev.pci.cfg[b->dev.msix_cap + 3] = 0x80; /* exercise the MSI-X paths too */
        for (size_t i = 0; i + 8 <= ops_len; i += 8) {
            uint16_t off;
            uint32_t val;
            memcpy(&off, &ops[i], 2);
            memcpy(&val, &ops[i + 4], 4);
            static const uint32_t sizes[4] = {1, 2, 4, 8};
            uint32_t size = sizes[ops[i + 2] & 3];
            uint8_t data[8] = {0};
            memcpy(data, &val, 4);
            virtio_bar_io(&b->dev, 0, off, data, size, ops[i + 3] & 1);
        }
        /* the driver's final kick */
        uint8_t kick[2] = {0, 0};
        virtio_bar_io(&b->dev, 0, VIRTIO_BAR_NOTIFY, kick, 2, 1);
        if (res) {
            res->requests = b->dev.stats.requests;
            res->errors = b->dev.stats.errors;
            res->status = b->dev.status;
            res->bytes_read = b->dev.stats.bytes_read;
            res->bytes_written = b->dev.stats.bytes_written;
        }
        virtio_dev_destroy(&b->dev);
    }
    free(b);
    free(m.mem);
    return r;
}
