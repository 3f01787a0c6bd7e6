/*
 * pci.h - a PCI host bridge reached through configuration mechanism #1
 * (ports 0xcf8/0xcfc, what `pci=conf1` makes Linux use) with one memory
 * BAR per device, decoded inside a fixed window of the 32-bit MMIO hole.
 */
#ifndef APPLIANCE_PCI_H
#define APPLIANCE_PCI_H

#include <pthread.h>
#include <stdint.h>

#define PCI_CONF_ADDR 0xcf8
#define PCI_CONF_DATA 0xcfc
#define PCI_WINDOW_BASE 0xe0000000ULL
#define PCI_WINDOW_SIZE 0x10000000ULL
#define PCI_MAX_DEVICES 16 /* slot 0 is the host bridge */

struct bus;
typedef void (*pci_bar_fn)(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                           uint32_t size, int is_write);

struct pci_device {
    uint8_t cfg[256];
    uint8_t wmask[256];  /* bits the guest may write */
    uint32_t bar0_size;  /* power of two; 0 = no BAR */
    uint8_t cap_end;     /* next free offset for a capability */
    uint8_t cap_last;    /* offset of the last capability (0 = none) */
    pci_bar_fn bar0_fn;
    void *opaque;
};

struct pci_bus {
    pthread_mutex_t lock;
    uint32_t conf_addr;
    uint32_t count;
    struct pci_device *devs[PCI_MAX_DEVICES];
    struct pci_device host_bridge;
};

int pci_init(struct pci_bus *p, struct bus *pio, struct bus *mmio);
void pci_destroy(struct pci_bus *p);
/* Plug a device into the next free slot; its BAR0 gets a fixed address in
 * the window.  Returns the slot or -1 when full. */
int pci_add(struct pci_bus *p, struct pci_device *d);
/* Start a device's configuration header (vendor, device, class, BAR0). */
void pci_header(struct pci_device *d, uint16_t vendor, uint16_t device, uint32_t class_rev,
                uint16_t sub_vendor, uint16_t sub_id);
/* Append a capability of `len` bytes (id first); returns its offset or 0. */
uint8_t pci_add_cap(struct pci_device *d, const uint8_t *body, uint8_t len);

static inline uint32_t pci_cfg_get32(const struct pci_device *d, uint32_t off)
{
    return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
           (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

#endif
