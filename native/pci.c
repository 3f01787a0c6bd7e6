/*
 * pci.c - PCI host bridge (configuration mechanism #1) and BAR decoding.
 *
 * Why virtio-pci and not virtio-mmio: Debian's kernel has
 * VIRTIO_MMIO_CMDLINE_DEVICES off and we have no ACPI tables, so an mmio
 * device could not be described to it; a PCI bus reached through ports
 * 0xcf8/0xcfc is found by the stock kernel with `pci=conf1` and nothing else.
 *
 * The host bridge (00:00.0, Intel vendor id, class 06.00) lets Linux's
 * conf1 sanity check pass.  Each device has one 32-bit memory BAR; the guest
 * may size and move it, and MMIO accesses are decoded against the current
 * BAR value inside one window registered on the MMIO bus.
 */
#include <string.h>

#include "vmm_internal.h"

#define PCI_SLOT_STRIDE 0x100000ULL /* 1 MiB of window per slot */

void pci_header(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_rev,
                uint16_t sub_vendor, uint16_t sub_id)
{
    memset(d->cfg, 0, sizeof(d->cfg));
    memset(d->wmask, 0, sizeof(d->wmask));
    d->cfg[0x00] = vendor & 0xff;
    d->cfg[0x01] = vendor >> 8;
    d->cfg[0x02] = device & 0xff;
    d->cfg[0x03] = device >> 8;
    d->cfg[0x08] = class_rev & 0xff;
    d->cfg[0x09] = (class_rev >> 8) & 0xff;
    d->cfg[0x0a] = (class_rev >> 16) & 0xff;
    d->cfg[0x0b] = class_rev >> 24;
    d->cfg[0x2c] = sub_vendor & 0xff;
    d->cfg[0x2d] = sub_vendor >> 8;
    d->cfg[0x2e] = sub_id & 0xff;
    d->cfg[0x2f] = sub_id >> 8;
    d->wmask[0x04] = 0x06; /* command: memory space, bus master */
    d->wmask[0x05] = 0x04; /* command: INTx disable */
    d->wmask[0x3c] = 0xff; /* interrupt line */
    d->cap_end = 0x40;
    d->cap_last = 0;
}

uint8_t pci_add_cap(struct pci_device *d, const uint8_t *body, uint8_t len)
{
    uint32_t off = d->cap_end;
    if (len < 2 || off + len > 256)
        return 0;
    memcpy(&d->cfg[off], body, len);
    d->cfg[off + 1] = 0;
    if (d->cap_last)
        d->cfg[d->cap_last + 1] = (uint8_t)off;
    else
        d->cfg[0x34] = (uint8_t)off;
    d->cfg[0x06] |= 0x10; /* status: capability list */
    d->cap_last = (uint8_t)off;
    d->cap_end = (uint8_t)((off + len + 3) & ~3u);
    return (uint8_t)off;
}

static uint32_t bar0_addr(const struct pci_device *d)
{
    return pci_cfg_get32(d, 0x10) & ~0xfu;
}

static void cfg_write_byte(struct pci_device *d, uint32_t off, uint8_t v)
{
    if (off >= 0x10 && off < 0x14) {
        /* BAR0: the low bits are the size (read-only zeros), the rest writable */
        uint32_t shift = 8 * (off - 0x10);
        uint32_t mask = d->bar0_size ? ~(d->bar0_size - 1) : 0;
        uint32_t bar = pci_cfg_get32(d, 0x10);
        bar = (bar & ~(0xffu << shift)) | (((uint32_t)v << shift) & mask & (0xffu << shift));
        for (int i = 0; i < 4; i++)
            d->cfg[0x10 + i] = (uint8_t)(bar >> (8 * i));
        return;
    }
    d->cfg[off] = (uint8_t)((d->cfg[off] & ~d->wmask[off]) | (v & d->wmask[off]));
}

static void conf_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data, uint32_t size,
                    int is_write)
{
    struct pci_bus *p = opaque;
    (void)cpu;
    pthread_mutex_lock(&p->lock);
    if (offset < 4) {
        /* address register: only whole-dword accesses at 0xcf8 */
        if (offset == 0 && size == 4) {
            if (is_write)
                memcpy(&p->conf_addr, data, 4);
            else
                memcpy(data, &p->conf_addr, 4);
        } else if (!is_write) {
            memset(data, 0xff, size);
        }
        pthread_mutex_unlock(&p->lock);
        return;
    }
    uint32_t a = p->conf_addr;
    uint32_t bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
    uint32_t reg = (a & 0xfc) + (uint32_t)(offset - 4);
    struct pci_device *d = NULL;
    if ((a & 0x80000000u) && bus == 0 && fn == 0 && slot < p->count)
        d = p->devs[slot];
    for (uint32_t i = 0; i < size; i++) {
        uint32_t r = reg + i;
        if (is_write) {
            if (d && r < 256)
                cfg_write_byte(d, r, data[i]);
        } else {
            data[i] = (d && r < 256) ? d->cfg[r] : 0xff;
        }
    }
    pthread_mutex_unlock(&p->lock);
}

static void window_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                      uint32_t size, int is_write)
{
    struct pci_bus *p = opaque;
    uint64_t addr = PCI_WINDOW_BASE + offset;
    struct pci_device *hit = NULL;
    uint64_t off = 0;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 1; i < p->count; i++) {
        struct pci_device *d = p->devs[i];
        uint64_t bar = bar0_addr(d);
        if (d->bar0_size && (d->cfg[0x04] & 0x02) && addr >= bar &&
            addr - bar < d->bar0_size && addr - bar + size <= d->bar0_size) {
            hit = d;
            off = addr - bar;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (hit)
        hit->bar0_fn(hit->opaque, cpu, off, data, size, is_write);
    else if (!is_write)
        memset(data, 0xff, size);
}

int pci_init(struct pci_bus *p, struct bus *pio, struct bus *mmio)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pci_header(&p->host_bridge, 0x8086, 0x1237, 0x06000002, 0, 0); /* 440FX-like */
    p->devs[0] = &p->host_bridge;
    p->count = 1;
    if (bus_register(pio, PCI_CONF_ADDR, 8, conf_io, p) < 0 ||
        bus_register(mmio, PCI_WINDOW_BASE, PCI_WINDOW_SIZE, window_io, p) < 0)
        return -1;
    return 0;
}

void pci_destroy(struct pci_bus *p)
{
    pthread_mutex_destroy(&p->lock);
}

int pci_add(struct pci_bus *p, struct pci_device *d)
{
    pthread_mutex_lock(&p->lock);
    if (p->count >= PCI_MAX_DEVICES || d->bar0_size > PCI_SLOT_STRIDE) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    uint32_t slot = p->count;
    uint32_t bar = (uint32_t)(PCI_WINDOW_BASE + slot * PCI_SLOT_STRIDE);
    for (int i = 0; i < 4; i++)
        d->cfg[0x10 + i] = (uint8_t)(bar >> (8 * i));
    p->devs[p->count++] = d;
    pthread_mutex_unlock(&p->lock);
    return (int)slot;
}
