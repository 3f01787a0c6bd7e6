/*
 * vmm.h - the public C API of the appliance KVM microVM monitor.
 *
 * Small and explicit so that cffi can wrap it: an opaque handle, integer
 * error codes (with a message kept in the handle), no global state, and
 * nothing that prints.  Guest serial output goes to a file descriptor the
 * caller supplies; serial input is pushed in with vmm_serial_input().
 *
 * Life cycle:
 *   vmm_create()                      KVM VM, irqchip, PIT, RAM, vCPUs, devices
 *   vmm_load_linux() | vmm_load_raw() + vmm_set_entry()
 *   vmm_run()                         blocks until the guest stops
 *   vmm_stop()      (any thread)      asks vmm_run() to return (KILLED)
 *   vmm_send_ctrl_alt_del() (any thread) asks the guest to reboot: it
 *                                     resets (reboot=k) and vmm_run() returns
 *   vmm_destroy()
 */
#ifndef APPLIANCE_VMM_H
#define APPLIANCE_VMM_H

/* Fixed guest I/O ports and layout (also used by the test guests' assembly). */
#define VMM_PORT_COM1 0x3f8
#define VMM_COM1_IRQ 4
#define VMM_PORT_I8042_DATA 0x60
#define VMM_PORT_I8042_CMD 0x64
#define VMM_I8042_KBD_IRQ 1
#define VMM_PORT_RTC 0x70
#define VMM_PORT_BOOT_DONE 0x440  /* first write stops the boot timer */
#define VMM_PORT_DEBUG_EXIT 0x501 /* write = power off, value = exit code */

#define VMM_GDT_ADDR 0x0500
#define VMM_ZERO_PAGE_ADDR 0x7000
#define VMM_PML4_ADDR 0x9000
#define VMM_CMDLINE_ADDR 0x20000
#define VMM_CMDLINE_MAX 0x10000
#define VMM_EBDA_ADDR 0x9fc00 /* MP table lives here */
#define VMM_KERNEL_ADDR 0x100000
#define VMM_MMIO_HOLE_START 0xc0000000ULL /* 3 GiB: 32-bit MMIO hole */
#define VMM_MMIO_HOLE_END 0x100000000ULL

#define VMM_MAX_CPUS 32
#define VMM_MAX_DEVICES 8     /* virtio devices (PCI slots 1..8, GSI 16..23) */
#define VMM_PCI_IRQ_BASE 16
#define VMM_MAX_E820 8

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

/* Error codes (returned negated: 0 is success, -VMM_E_... a failure). */
enum vmm_errcode {
    VMM_OK = 0,
    VMM_E_INVAL = 1,         /* bad argument from the caller */
    VMM_E_KVM_OPEN = 2,      /* the kvm device is missing or cannot be opened */
    VMM_E_KVM_UNUSABLE = 3,  /* the kvm device is there but unusable (API, caps) */
    VMM_E_KVM_IOCTL = 4,     /* a KVM ioctl failed */
    VMM_E_NOMEM = 5,         /* the host could not allocate */
    VMM_E_MEM_TOO_LARGE = 6, /* guest memory above what the host has */
    VMM_E_NOT_BZIMAGE = 7,   /* kernel image is not a (supported) bzImage */
    VMM_E_TOO_BIG = 8,       /* kernel, initrd or command line do not fit */
    VMM_E_RANGE = 9,         /* a guest-physical range outside guest RAM */
    VMM_E_THREAD = 10,       /* creating a vCPU thread failed */
    VMM_E_STATE = 11,        /* call not valid in the handle's state */
    VMM_E_IO = 12,           /* reading a kernel or initramfs file failed */
    VMM_E_DEVICE = 13,       /* a device cannot be created (disk, TAP) */
    VMM_E_BUSY = 14,         /* a device has no room for more input */
};

/* Kinds of virtio device (the virtio device id). */
enum vmm_device_kind {
    VMM_DEV_NET = 1,
    VMM_DEV_BLOCK = 2,
};

/* State and counters of one virtio device, for tests and monitoring. */
struct vmm_device_info {
    uint32_t kind;          /* enum vmm_device_kind */
    uint32_t pci_slot;
    uint32_t irq;           /* INTx GSI */
    uint32_t status;        /* virtio device status (0x40 = needs reset) */
    uint64_t features;      /* offered */
    uint64_t driver_features;
    uint64_t requests;      /* chains taken from the queues */
    uint64_t errors;        /* guest mistakes that broke the device */
    uint64_t bytes_read;    /* device -> guest */
    uint64_t bytes_written; /* guest -> device */
    uint64_t interrupts;
    uint64_t rx_dropped;    /* net: frames from the TAP with no guest buffer */
    char last_error[128];
};

/* Why vmm_run() returned. */
enum vmm_exit_reason {
    VMM_EXIT_NONE = 0,
    VMM_EXIT_POWEROFF = 1,     /* guest wrote the debug-exit port */
    VMM_EXIT_RESET_I8042 = 2,  /* guest pulsed the reset line through the i8042 */
    VMM_EXIT_TRIPLE_FAULT = 3, /* KVM_EXIT_SHUTDOWN (triple fault, reboot=t) */
    VMM_EXIT_CRASH = 4,        /* KVM internal error, failed entry, unknown exit */
    VMM_EXIT_KILLED = 5,       /* vmm_stop() from the host */
};

/* Entry modes for vmm_set_entry(). */
enum vmm_entry_mode {
    VMM_ENTRY_REAL16 = 0, /* real mode, CS = entry >> 4, IP = entry & 0xf */
    VMM_ENTRY_PROT32 = 1, /* flat 32-bit protected mode, paging off */
    VMM_ENTRY_LONG64 = 2, /* 64-bit long mode, identity-mapped first 4 GiB */
};

struct vmm_config {
    const char *kvm_path; /* NULL means "/dev/kvm" */
    uint64_t mem_bytes;   /* guest RAM, multiple of 1 MiB, >= 16 MiB */
    uint32_t ncpus;       /* 1 .. VMM_MAX_CPUS */
    int console_out_fd;   /* serial output is written here; -1 discards it */
    int kick_signal;      /* signal that kicks vCPU threads out of KVM_RUN;
                             0 = SIGRTMIN + 4 (a real-time signal applications
                             rarely use).  If the process has no handler for it,
                             vmm_create() installs an empty one (process-wide). */
    int seccomp;          /* non-zero: each vCPU thread confines itself with a
                             seccomp filter (seccomp.c) before running the guest */
};

struct vmm_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* 1 = RAM, 2 = reserved */
};

/* Filled by vmm_load_linux(): what the loader read and where it put things. */
struct vmm_boot_info {
    uint16_t protocol;       /* boot protocol version, e.g. 0x020f */
    uint8_t setup_sects;
    uint8_t loadflags;
    uint16_t xloadflags;
    uint32_t initrd_addr_max;
    uint32_t kernel_alignment;
    uint32_t cmdline_size;   /* maximum the kernel accepts (w/o NUL) */
    uint32_t init_size;
    uint64_t pref_address;
    uint64_t kernel_addr;    /* where the protected-mode kernel was loaded */
    uint64_t kernel_size;
    uint64_t entry;          /* entry point used */
    uint32_t entry_mode;     /* enum vmm_entry_mode */
    uint64_t initrd_addr;
    uint64_t initrd_size;
    uint64_t zero_page;
    uint64_t cmdline_addr;
    uint32_t e820_count;
    struct vmm_e820_entry e820[VMM_MAX_E820];
};

struct vmm_counters {
    uint64_t exits_total;
    uint64_t io_in;
    uint64_t io_out;
    uint64_t mmio_read;
    uint64_t mmio_write;
    uint64_t hlt;
    uint64_t shutdown;
    uint64_t interrupted; /* KVM_RUN returned EINTR (kicks, signals) */
    uint64_t unhandled_io;
    uint64_t unhandled_mmio;
    uint64_t serial_tx_bytes;
    uint64_t serial_rx_bytes;
};

struct vmm_result {
    uint32_t reason;          /* enum vmm_exit_reason */
    uint32_t cpu;             /* vCPU that caused the stop */
    int32_t exit_code;        /* value written to the debug-exit port */
    uint32_t kvm_exit_reason; /* raw KVM exit reason for VMM_EXIT_CRASH */
    uint64_t hw_reason;       /* hardware/suberror detail for VMM_EXIT_CRASH */
    int64_t boot_done_ns;     /* start of run -> first boot-done write; -1 never */
    uint32_t boot_done_value;
    int64_t run_ns;           /* duration of vmm_run() */
    struct vmm_counters counters;
};

typedef struct vmm vmm_t;

/* Create a VM.  On failure *out is NULL and msg (if given) names the reason. */
int vmm_create(const struct vmm_config *cfg, vmm_t **out, char *msg, size_t msglen);
void vmm_destroy(vmm_t *vm);

/* Message of the last failed call on this handle. */
const char *vmm_last_error(const vmm_t *vm);

/* Load a bzImage (+ optional initrd) per the Linux x86 boot protocol and set
 * the boot vCPU to its entry point (64-bit if the kernel supports it and
 * prefer_64 is non-zero, otherwise 32-bit). */
int vmm_load_linux(vmm_t *vm, const uint8_t *kernel, size_t kernel_len,
                   const uint8_t *initrd, size_t initrd_len, const char *cmdline,
                   int prefer_64, struct vmm_boot_info *info);

/* The same, reading the files straight into guest RAM (no copy held by the
 * monitor); initrd_fd is -1 for none.  The fds stay open (the caller's). */
int vmm_load_linux_fd(vmm_t *vm, int kernel_fd, int initrd_fd, const char *cmdline,
                      int prefer_64, struct vmm_boot_info *info);

/* Copy raw bytes into guest RAM (for test guests and firmware blobs). */
int vmm_load_raw(vmm_t *vm, uint64_t gpa, const uint8_t *data, size_t len);
/* Copy guest RAM out (for inspection). */
int vmm_read_mem(const vmm_t *vm, uint64_t gpa, uint8_t *out, size_t len);
/* Point the boot vCPU at an entry point; esi is passed in ESI/RSI (the zero
 * page for Linux).  A zero page with the e820 map is always present. */
int vmm_set_entry(vmm_t *vm, uint32_t mode, uint64_t entry, uint64_t esi);

/* Add a virtio-blk disk backed by fd (a raw image; the monitor keeps a dup).
 * Returns the device index (>= 0) or a negative error.  Before vmm_run(). */
int vmm_add_disk(vmm_t *vm, int fd, int read_only);
/* Add a virtio-net device on an existing TAP interface; mac is 6 bytes.
 * Returns the device index or a negative error.  Before vmm_run(). */
int vmm_add_net(vmm_t *vm, const char *tap, const uint8_t *mac);
int vmm_device_count(const vmm_t *vm);
int vmm_get_device(vmm_t *vm, uint32_t index, struct vmm_device_info *out);

/* Run all vCPUs until the guest stops or vmm_stop() is called. */
int vmm_run(vmm_t *vm, struct vmm_result *res);
/* Ask a running vmm_run() to return with VMM_EXIT_KILLED; safe from any thread. */
void vmm_stop(vmm_t *vm);

/* Press and release Ctrl, Alt and Delete on the guest's keyboard (i8042,
 * scan code set 2, IRQ 1): Linux's request to reboot, which systemd turns
 * into ctrl-alt-del.target; with reboot=k the guest's reset then ends
 * vmm_run() with VMM_EXIT_RESET_I8042.  Safe from any thread, running or
 * not.  -VMM_E_BUSY when the keyboard's buffer has no room for the keys
 * (the guest is not reading its keyboard). */
int vmm_send_ctrl_alt_del(vmm_t *vm);

/* Queue bytes for the guest's COM1 receiver; returns the number accepted
 * (the FIFO holds a bounded amount) or a negative error. */
int vmm_serial_input(vmm_t *vm, const uint8_t *data, size_t len);

/* Snapshot of the exit counters (safe while running). */
void vmm_get_counters(const vmm_t *vm, struct vmm_counters *out);

/* The guest memory map as the monitor presents it (e820). */
int vmm_get_e820(const vmm_t *vm, struct vmm_e820_entry *out, uint32_t max);

/* Stable text for an error code / exit reason. */
const char *vmm_strerror(int code);
const char *vmm_exit_reason_name(uint32_t reason);

#endif /* __ASSEMBLER__ */
#endif
