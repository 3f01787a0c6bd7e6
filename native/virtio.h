/*
 * virtio.h - a virtio 1.x device on the PCI transport (virtio_pci.c) and the
 * devices behind it (virtio_blk.c, virtio_net.c).
 *
 * A device embeds struct virtio_dev first.  The transport owns feature
 * negotiation, status, queues, ISR, MSI-X and the PCI function; the device
 * supplies its config space and a notify callback, both called with
 * d->lock held.  Errors in what the guest put into a queue set
 * DEVICE_NEEDS_RESET: the device stops until the driver resets it.
 */
#ifndef APPLIANCE_VIRTIO_H
#define APPLIANCE_VIRTIO_H

#include <pthread.h>
#include <stdint.h>

#include "pci.h"
#include "virtq.h"
#include "vmm_internal.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

#define VIRTIO_F_VERSION_1 (1ULL << 32)
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_MAX_QUEUES 2
#define VIRTIO_MSIX_VECTORS (VIRTIO_MAX_QUEUES + 1)

/* BAR0 layout (16 KiB) */
#define VIRTIO_BAR_SIZE 0x4000
#define VIRTIO_BAR_COMMON 0x0000
#define VIRTIO_BAR_ISR 0x1000
#define VIRTIO_BAR_DEVICE 0x2000
#define VIRTIO_BAR_NOTIFY 0x3000
#define VIRTIO_NOTIFY_MULT 4
#define VIRTIO_BAR_MSIX 0x3800
#define VIRTIO_BAR_PBA 0x3c00

struct virtio_dev;

struct virtio_ops {
    void (*notify)(struct virtio_dev *d, uint16_t queue);
    void (*reset)(struct virtio_dev *d);
    void (*driver_ok)(struct virtio_dev *d);
    /* device-specific configuration space */
    void (*cfg_read)(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t size);
};

struct virtio_msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_stats {
    uint64_t requests;
    uint64_t errors;
    uint64_t bytes_read;    /* device -> guest */
    uint64_t bytes_written; /* guest -> device */
    uint64_t interrupts;
};

struct virtio_dev {
    pthread_mutex_t lock;
    const struct virtio_ops *ops;
    struct vm_events ev;
    struct virtq_mem mem;
    int vm_fd;             /* for KVM_SIGNAL_MSI; -1 in the fuzz harness */
    struct pci_device pci;
    int slot;
    uint32_t device_id;
    uint32_t irq;          /* INTx line (GSI) */
    int irq_level;

    uint64_t features, driver_features;
    uint32_t dfselect, gfselect;
    uint16_t msix_config;
    uint8_t status;
    uint8_t config_gen;
    uint16_t queue_sel;
    uint16_t nqueues;
    uint16_t queue_max;
    struct virtq vq[VIRTIO_MAX_QUEUES];
    uint8_t isr;
    uint8_t msix_cap;      /* offset of the MSI-X capability in cfg */
    struct virtio_msix_entry msix[VIRTIO_MSIX_VECTORS];
    uint32_t msix_pending; /* PBA bits */

    struct virtio_stats stats;
    char last_error[128];
};

/* Fill the transport side of a device (PCI header, capabilities, queues). */
void virtio_dev_init(struct virtio_dev *d, uint32_t device_id, uint16_t nqueues,
                     uint16_t queue_max, uint64_t features, const struct virtio_ops *ops,
                     const struct vm_events *ev, const struct virtq_mem *mem, int vm_fd,
                     uint32_t irq);
void virtio_dev_destroy(struct virtio_dev *d);
/* The BAR0 handler (also driven directly by the fuzz harness). */
void virtio_bar_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data, uint32_t size,
                   int is_write);
/* Interrupt the driver for queue q (used buffers), honouring NO_INTERRUPT. */
void virtio_queue_irq(struct virtio_dev *d, uint16_t q);
/* The guest broke a rule: stop the device until reset, remember why. */
void virtio_dev_error(struct virtio_dev *d, const char *what, int virtq_err);
int virtio_driver_ok(const struct virtio_dev *d);

/* ---- virtio_blk.c --------------------------------------------------------- */

struct virtio_blk {
    struct virtio_dev dev; /* first */
    int fd;
    int read_only;
    uint64_t capacity;     /* in 512-byte sectors */
    char serial[20];
};

int virtio_blk_init(struct virtio_blk *b, int fd, int read_only, const struct vm_events *ev,
                    const struct virtq_mem *mem, int vm_fd, uint32_t irq, char *err,
                    size_t errlen);
/* Process every available request of the request queue. */
void virtio_blk_process(struct virtio_blk *b);

/* ---- virtio_net.c --------------------------------------------------------- */

struct virtio_net {
    struct virtio_dev dev; /* first */
    int tap_fd;
    int wake_fd;           /* eventfd: rx buffers posted, or stop */
    uint8_t mac[6];
    int stop;
    pthread_t rx_thread;
    int rx_started;
    uint64_t rx_dropped;
};

int virtio_net_init(struct virtio_net *n, const char *tap, const uint8_t mac[6],
                    const struct vm_events *ev, const struct virtq_mem *mem, int vm_fd,
                    uint32_t irq, char *err, size_t errlen);
int virtio_net_start(struct virtio_net *n, char *err, size_t errlen);
void virtio_net_destroy(struct virtio_net *n);

#endif
