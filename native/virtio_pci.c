/*
 * virtio_pci.c - the virtio 1.x PCI transport ("modern" only, section 4.1):
 * vendor capabilities pointing into BAR0 (common config, notify, ISR,
 * device config), MSI-X table and PBA in the same BAR, INTx as fallback.
 *
 * Interrupts go through the in-kernel irqchip: MSI-X messages with
 * KVM_SIGNAL_MSI, INTx with KVM_IRQ_LINE (level, lowered when ISR is read).
 * Queue notifications are handled synchronously on the vCPU that wrote the
 * notify register (no ioeventfd thread: a request is done before the
 * guest's notify write completes).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "virtio.h"

#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4
#define NO_VECTOR 0xffff
#define MSIX_ENABLE 0x80
#define MSIX_MASKALL 0x40

static void add_vendor_cap(struct virtio_dev *d, uint8_t type, uint32_t off, uint32_t len,
                           int notify)
{
    uint8_t c[20] = {0x09, 0, notify ? 20 : 16, type, 0 /* BAR0 */, 0, 0, 0};
    memcpy(&c[8], &off, 4);
    memcpy(&c[12], &len, 4);
    uint32_t mult = VIRTIO_NOTIFY_MULT;
    memcpy(&c[16], &mult, 4);
    pci_add_cap(&d->pci, c, notify ? 20 : 16);
}

static void reset_locked(struct virtio_dev *d)
{
    d->driver_features = 0;
    d->dfselect = d->gfselect = 0;
    d->msix_config = NO_VECTOR;
    d->status = 0;
    d->queue_sel = 0;
    d->isr = 0;
    d->msix_pending = 0;
    for (uint16_t i = 0; i < d->nqueues; i++)
        virtq_reset(&d->vq[i], d->queue_max);
    if (d->irq_level) {
        d->irq_level = 0;
        if (d->ev.set_irq)
            d->ev.set_irq(d->ev.ctx, d->irq, 0);
    }
    if (d->ops->reset)
        d->ops->reset(d);
}

void virtio_dev_init(struct virtio_dev *d, uint32_t device_id, uint16_t nqueues,
                     uint16_t queue_max, uint64_t features, const struct virtio_ops *ops,
                     const struct vm_events *ev, const struct virtq_mem *mem, int vm_fd,
                     uint32_t irq)
{
    pthread_mutex_init(&d->lock, NULL);
    d->ops = ops;
    d->ev = *ev;
    d->mem = *mem;
    d->vm_fd = vm_fd;
    d->device_id = device_id;
    d->nqueues = nqueues > VIRTIO_MAX_QUEUES ? VIRTIO_MAX_QUEUES : nqueues;
    d->queue_max = queue_max;
    d->features = features | VIRTIO_F_VERSION_1;
    d->irq = irq;
    d->slot = -1;

    uint32_t class = device_id == VIRTIO_ID_NET ? 0x02000001 : 0x01800001;
    pci_header(&d->pci, 0x1af4, (uint16_t)(0x1040 + device_id), class, 0x1af4,
               (uint16_t)device_id);
    d->pci.cfg[0x3c] = (uint8_t)irq;
    d->pci.cfg[0x3d] = 1; /* INTA# */
    d->pci.bar0_size = VIRTIO_BAR_SIZE;
    d->pci.bar0_fn = virtio_bar_io;
    d->pci.opaque = d;
    add_vendor_cap(d, VIRTIO_PCI_CAP_COMMON, VIRTIO_BAR_COMMON, 0x38, 0);
    add_vendor_cap(d, VIRTIO_PCI_CAP_NOTIFY, VIRTIO_BAR_NOTIFY,
                   VIRTIO_NOTIFY_MULT * VIRTIO_MAX_QUEUES, 1);
    add_vendor_cap(d, VIRTIO_PCI_CAP_ISR, VIRTIO_BAR_ISR, 1, 0);
    add_vendor_cap(d, VIRTIO_PCI_CAP_DEVICE, VIRTIO_BAR_DEVICE, 0x100, 0);
    uint16_t nvec = (uint16_t)(d->nqueues + 1);
    uint8_t msix[12] = {0x11, 0, (uint8_t)(nvec - 1), 0};
    uint32_t table = VIRTIO_BAR_MSIX, pba = VIRTIO_BAR_PBA; /* BIR 0 */
    memcpy(&msix[4], &table, 4);
    memcpy(&msix[8], &pba, 4);
    d->msix_cap = pci_add_cap(&d->pci, msix, sizeof(msix));
    d->pci.wmask[d->msix_cap + 3] = MSIX_ENABLE | MSIX_MASKALL;
    for (uint32_t i = 0; i < VIRTIO_MSIX_VECTORS; i++)
        d->msix[i].ctrl = 1; /* masked */
    reset_locked(d);
}

void virtio_dev_destroy(struct virtio_dev *d)
{
    pthread_mutex_destroy(&d->lock);
}

int virtio_driver_ok(const struct virtio_dev *d)
{
    return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- interrupts --------------------------------------------------------- */

static int msix_on(const struct virtio_dev *d)
{
    return d->msix_cap &&
           (__atomic_load_n(&d->pci.cfg[d->msix_cap + 3], __ATOMIC_RELAXED) & MSIX_ENABLE);
}

static void msix_fire(struct virtio_dev *d, uint16_t vector)
{
    if (vector >= VIRTIO_MSIX_VECTORS || vector > d->nqueues)
        return;
    const struct virtio_msix_entry *e = &d->msix[vector];
    if ((e->ctrl & 1) || (d->pci.cfg[d->msix_cap + 3] & MSIX_MASKALL)) {
        d->msix_pending |= 1u << vector;
        return;
    }
    d->stats.interrupts++;
    if (d->vm_fd < 0)
        return;
    struct kvm_msi msi = {.address_lo = e->addr_lo, .address_hi = e->addr_hi, .data = e->data};
    (void)ioctl(d->vm_fd, KVM_SIGNAL_MSI, &msi); /* fails only without an irqchip */
}

static void intx_update(struct virtio_dev *d)
{
    int level = d->isr != 0 && !msix_on(d) && !(d->pci.cfg[0x05] & 0x04);
    if (level != d->irq_level) {
        d->irq_level = level;
        if (level)
            d->stats.interrupts++;
        if (d->ev.set_irq)
            d->ev.set_irq(d->ev.ctx, d->irq, level);
    }
}

void virtio_queue_irq(struct virtio_dev *d, uint16_t q)
{
    if (q >= d->nqueues || !virtq_wants_irq(&d->vq[q]))
        return;
    if (msix_on(d)) {
        msix_fire(d, d->vq[q].msix_vector);
        return;
    }
    d->isr |= 1;
    intx_update(d);
}

static void config_irq(struct virtio_dev *d)
{
    d->config_gen++;
    if (msix_on(d)) {
        msix_fire(d, d->msix_config);
        return;
    }
    d->isr |= 2;
    intx_update(d);
}

void virtio_dev_error(struct virtio_dev *d, const char *what, int virtq_err)
{
    d->stats.errors++;
    snprintf(d->last_error, sizeof(d->last_error), "%s%s%s", what,
             virtq_err ? ": " : "", virtq_err ? virtq_strerror(virtq_err) : "");
    if (!(d->status & VIRTIO_STATUS_NEEDS_RESET)) {
        d->status |= VIRTIO_STATUS_NEEDS_RESET;
        if (d->status & VIRTIO_STATUS_DRIVER_OK)
            config_irq(d);
    }
}

/* ---- BAR0 --------------------------------------------------------------- */

static uint32_t get_le(const uint8_t *data, uint32_t size)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < size && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *data, uint32_t size, uint64_t v)
{
    for (uint32_t i = 0; i < size; i++)
        data[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t set_half(uint64_t old, uint32_t hi, uint32_t v)
{
    return hi ? (old & 0xffffffffULL) | (uint64_t)v << 32 : (old & ~0xffffffffULL) | v;
}

static uint64_t common_read(struct virtio_dev *d, uint32_t off)
{
    struct virtq *q = d->queue_sel < d->nqueues ? &d->vq[d->queue_sel] : NULL;
    switch (off) {
    case 0x00: return d->dfselect;
    case 0x04: return d->dfselect < 2 ? (uint32_t)(d->features >> (32 * d->dfselect)) : 0;
    case 0x08: return d->gfselect;
    case 0x0c: return d->gfselect < 2 ? (uint32_t)(d->driver_features >> (32 * d->gfselect)) : 0;
    case 0x10: return d->msix_config;
    case 0x12: return d->nqueues;
    case 0x14: return d->status;
    case 0x15: return d->config_gen;
    case 0x16: return d->queue_sel;
    case 0x18: return q ? q->size : 0;
    case 0x1a: return q ? q->msix_vector : NO_VECTOR;
    case 0x1c: return q ? (uint64_t)q->enabled : 0;
    case 0x1e: return d->queue_sel;
    case 0x20: return q ? q->desc_gpa : 0;
    case 0x24: return q ? q->desc_gpa >> 32 : 0;
    case 0x28: return q ? q->avail_gpa : 0;
    case 0x2c: return q ? q->avail_gpa >> 32 : 0;
    case 0x30: return q ? q->used_gpa : 0;
    case 0x34: return q ? q->used_gpa >> 32 : 0;
    default: return 0;
    }
}

static void status_write(struct virtio_dev *d, uint8_t v)
{
    if (v == 0) {
        reset_locked(d);
        return;
    }
    uint8_t old = d->status;
    if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        /* accept only what we offered, and only a VERSION_1 driver */
        if ((d->driver_features & ~d->features) || !(d->driver_features & VIRTIO_F_VERSION_1))
            v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    }
    /* NEEDS_RESET is the device's to set, never the driver's to clear */
    d->status = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((d->status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
        d->ops->driver_ok)
        d->ops->driver_ok(d);
}

static void common_write(struct virtio_dev *d, uint32_t off, uint32_t size, uint32_t v)
{
    struct virtq *q = d->queue_sel < d->nqueues ? &d->vq[d->queue_sel] : NULL;
    /* queue registers are frozen while the queue is enabled (section 4.1.4.3.2) */
    int qw = q && !q->enabled;
    switch (off) {
    case 0x00: if (size == 4) d->dfselect = v; break;
    case 0x08: if (size == 4) d->gfselect = v; break;
    case 0x0c:
        if (size == 4 && d->gfselect < 2 && !(d->status & VIRTIO_STATUS_FEATURES_OK))
            d->driver_features = d->gfselect ? set_half(d->driver_features, 1, v)
                                             : set_half(d->driver_features, 0, v);
        break;
    case 0x10: if (size == 2) d->msix_config = (uint16_t)v; break;
    case 0x14: if (size == 1) status_write(d, (uint8_t)v); break;
    case 0x16: if (size == 2) d->queue_sel = (uint16_t)v; break;
    case 0x18:
        if (size == 2 && qw)
            q->size = (uint16_t)(v > d->queue_max ? d->queue_max : v);
        break;
    case 0x1a: if (size == 2 && q) q->msix_vector = (uint16_t)v; break;
    case 0x1c:
        if (size == 2 && qw && v == 1 && virtq_enable(q, &d->mem) < 0)
            virtio_dev_error(d, "queue enable", q->broken);
        break;
    case 0x20: case 0x24:
        if (size == 4 && qw) q->desc_gpa = set_half(q->desc_gpa, off == 0x24, v);
        break;
    case 0x28: case 0x2c:
        if (size == 4 && qw) q->avail_gpa = set_half(q->avail_gpa, off == 0x2c, v);
        break;
    case 0x30: case 0x34:
        if (size == 4 && qw) q->used_gpa = set_half(q->used_gpa, off == 0x34, v);
        break;
    default: break;
    }
}

static void msix_io(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t size,
                    int is_write)
{
    if (off >= VIRTIO_BAR_PBA) {
        if (!is_write)
            put_le(data, size, (off - VIRTIO_BAR_PBA) < 4 ? d->msix_pending >> (8 * (off & 3)) : 0);
        return;
    }
    uint32_t idx = (off - VIRTIO_BAR_MSIX) / 16, field = ((off - VIRTIO_BAR_MSIX) % 16) / 4;
    if (idx >= VIRTIO_MSIX_VECTORS || idx > d->nqueues || size != 4 || (off & 3)) {
        if (!is_write)
            memset(data, 0, size);
        return;
    }
    uint32_t *f = &d->msix[idx].addr_lo + field;
    if (!is_write) {
        put_le(data, 4, *f);
        return;
    }
    uint32_t v = get_le(data, 4);
    *f = field == 3 ? (v & 1) : v;
    if (field == 3 && !(v & 1) && (d->msix_pending & (1u << idx))) {
        d->msix_pending &= ~(1u << idx);
        msix_fire(d, (uint16_t)idx);
    }
}

void virtio_bar_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data, uint32_t size,
                   int is_write)
{
    struct virtio_dev *d = opaque;
    (void)cpu;
    if (size == 0 || size > 8 || offset >= VIRTIO_BAR_SIZE || offset + size > VIRTIO_BAR_SIZE)
        return;
    uint32_t off = (uint32_t)offset;
    int notify = -1;
    pthread_mutex_lock(&d->lock);
    if (off < VIRTIO_BAR_COMMON + 0x38) {
        if (is_write)
            common_write(d, off, size, get_le(data, size));
        else
            put_le(data, size, common_read(d, off));
    } else if (off == VIRTIO_BAR_ISR) {
        if (!is_write) {
            put_le(data, size, d->isr); /* read clears, and lowers INTx */
            d->isr = 0;
            intx_update(d);
        }
    } else if (off >= VIRTIO_BAR_DEVICE && off < VIRTIO_BAR_DEVICE + 0x100) {
        if (!is_write && d->ops->cfg_read)
            d->ops->cfg_read(d, off - VIRTIO_BAR_DEVICE, data, size);
        else if (!is_write)
            memset(data, 0, size);
    } else if (off >= VIRTIO_BAR_NOTIFY && off < VIRTIO_BAR_NOTIFY + 0x800) {
        if (is_write && (off - VIRTIO_BAR_NOTIFY) % VIRTIO_NOTIFY_MULT == 0)
            notify = (int)((off - VIRTIO_BAR_NOTIFY) / VIRTIO_NOTIFY_MULT);
        else if (!is_write)
            memset(data, 0, size);
    } else if (off >= VIRTIO_BAR_MSIX) {
        msix_io(d, off, data, size, is_write);
    } else if (!is_write) {
        memset(data, 0, size);
    }
    if (notify >= 0 && notify < d->nqueues && virtio_driver_ok(d) && d->vq[notify].enabled)
        d->ops->notify(d, (uint16_t)notify);
    pthread_mutex_unlock(&d->lock);
}
