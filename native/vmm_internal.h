/*
 * vmm_internal.h - structures shared by the monitor's C files (not part of
 * the public API in vmm.h).  Each device owns its state struct and
 * registers its port or MMIO range on a bus; the vCPU loop only dispatches
 * exits to the buses.
 */
#ifndef APPLIANCE_VMM_INTERNAL_H
#define APPLIANCE_VMM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm.h"
#include "pci.h"

struct virtio_dev;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- bus.c: port and MMIO dispatch -------------------------------------- */

typedef void (*bus_handler_fn)(void *opaque, uint32_t cpu, uint64_t offset,
                               uint8_t *data, uint32_t size, int is_write);

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_handler_fn fn;
    void *opaque;
};

#define BUS_MAX_RANGES 16

struct bus {
    struct bus_range ranges[BUS_MAX_RANGES];
    uint32_t count;
};

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn,
                 void *opaque);
/* Returns 1 if a device handled the access, 0 if nothing is mapped there. */
int bus_dispatch(const struct bus *bus, uint32_t cpu, uint64_t addr, uint8_t *data,
                 uint32_t size, int is_write);

/* ---- events a device may raise towards the machine ---------------------- */

struct vm_events {
    void *ctx;
    void (*stop)(void *ctx, uint32_t cpu, uint32_t reason, int32_t code);
    void (*set_irq)(void *ctx, uint32_t irq, int level);
    int (*stopping)(void *ctx); /* non-zero once the machine is stopping */
};

/* ---- serial.c: 16550A UART --------------------------------------------- */

#define SERIAL_RX_CAP 4096

struct serial {
    pthread_mutex_t lock;
    struct vm_events ev;
    uint32_t irq;
    int out_fd;
    uint8_t ier, lcr, mcr, lsr_err, scr, dll, dlm, fcr;
    int thr_pending; /* THR-empty interrupt pending */
    int irq_level;   /* last level set on the IRQ line */
    uint8_t rx[SERIAL_RX_CAP];
    uint32_t rx_head, rx_count;
    uint64_t tx_bytes, rx_bytes;
};

int serial_init(struct serial *s, struct bus *pio, uint16_t base, uint32_t irq,
                int out_fd, const struct vm_events *ev);
void serial_destroy(struct serial *s);
size_t serial_input(struct serial *s, const uint8_t *data, size_t len);
void serial_stats(struct serial *s, uint64_t *tx, uint64_t *rx);

/* ---- i8042.c: keyboard controller (reset line) and a minimal keyboard --- */

#define I8042_KBD_FIFO 16

struct i8042 {
    pthread_mutex_t lock;
    struct vm_events ev;
    uint8_t ctr;         /* controller configuration byte */
    uint8_t out;         /* output buffer */
    int out_full;
    int out_kbd;         /* the output buffer holds a byte from the keyboard */
    int irq_level;       /* keyboard byte waiting with IRQ 1 enabled (edges raise IRQ 1) */
    uint8_t pending;     /* controller command waiting for its data byte (0 = none) */
    uint8_t kbd_pending; /* keyboard command waiting for its parameter byte (0 = none) */
    uint8_t fifo[I8042_KBD_FIFO]; /* bytes the keyboard sends, oldest at head */
    uint32_t head, count;
};

int i8042_init(struct i8042 *k, struct bus *pio, const struct vm_events *ev);
void i8042_destroy(struct i8042 *k);
/* Type Ctrl-Alt-Delete (set 2 make and break codes); 0 or -ENOSPC. */
int i8042_ctrl_alt_del(struct i8042 *k);

/* ---- rtc.c: MC146818 CMOS clock ----------------------------------------- */

struct rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t cmos[128];
};

int rtc_init(struct rtc *r, struct bus *pio, uint16_t base);
void rtc_destroy(struct rtc *r);

/* ---- boot_timer.c: "boot done" port ------------------------------------ */

struct boot_timer {
    int64_t start_ns;
    int64_t done_ns;   /* -1 until the first write; written once atomically */
    uint32_t value;
};

int boot_timer_init(struct boot_timer *t, struct bus *pio, uint16_t port);
void boot_timer_start(struct boot_timer *t);
int64_t monotonic_ns(void);

/* ---- debug_exit.c: power-off port -------------------------------------- */

struct debug_exit {
    struct vm_events ev;
};

int debug_exit_init(struct debug_exit *d, struct bus *pio, uint16_t port,
                    const struct vm_events *ev);

/* ---- the machine -------------------------------------------------------- */

struct vcpu {
    struct vmm *vm;
    uint32_t id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    int thread_started;
    struct vmm_counters counters; /* updated with relaxed atomics */
};

struct vmm {
    int kvm_fd;
    int vm_fd;
    size_t run_size;

    uint8_t *ram;
    uint64_t mem_bytes;
    uint64_t low_bytes;  /* RAM mapped at [0, low_bytes) */
    uint64_t high_bytes; /* RAM mapped at [4 GiB, 4 GiB + high_bytes) */

    uint32_t ncpus;
    struct vcpu vcpus[VMM_MAX_CPUS];
    struct kvm_cpuid2 *cpuid;

    struct bus pio;
    struct bus mmio;
    struct vm_events events;
    struct serial serial;
    struct i8042 i8042;
    struct rtc rtc;
    struct boot_timer timer;
    struct debug_exit dbg;
    struct pci_bus pci;
    int devices_ready;
    struct virtio_dev *vdev[VMM_MAX_DEVICES];
    uint32_t nvdev;

    int kick_signal;
    int seccomp;
    pthread_mutex_t stop_lock;
    int stop_requested;   /* read with atomics by the vCPU loops */
    int threads_live;
    int has_run;
    int entry_set;
    struct vmm_result result;

    char err[256];
};

/* memory.c: the one place guest-physical addresses become host pointers. */
void *gpa_to_hva(const struct vmm *vm, uint64_t gpa, uint64_t len);
int vmm_build_e820(const struct vmm *vm, struct vmm_e820_entry *out, uint32_t max);

/* vcpu.c */
int vcpu_setup_cpuid(struct vmm *vm, struct vcpu *v);
int vcpu_setup_lapic(struct vmm *vm, struct vcpu *v);
int vcpu_set_entry(struct vmm *vm, struct vcpu *v, uint32_t mode, uint64_t entry,
                   uint64_t esi);

/* seccomp.c: confine the calling (vCPU) thread; 0 or -errno. */
int vcpu_seccomp(void);

/* mptable.c */
int mptable_write(struct vmm *vm, uint64_t addr, uint64_t max_len);

/* boot.c: zero page written for every guest (e820 lives there). */
int boot_write_zero_page_base(struct vmm *vm);

/* vmm.c: record an error message on the handle; returns -code. */
int vmm_fail(struct vmm *vm, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
