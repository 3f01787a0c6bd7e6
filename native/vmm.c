/*
 * vmm.c - the machine: KVM VM with in-kernel irqchip and PIT, guest RAM,
 * vCPUs and their threads, the devices on the buses, and the run loop that
 * turns KVM exits into bus accesses or a stop with a reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio.h"
#include "vmm_internal.h"

#define KVM_API_VERSION_EXPECTED 12
#define TSS_ADDR 0xfffbd000UL
#define IDENTITY_MAP_ADDR 0xfffbc000ULL
#define HOST_CPU ((uint32_t)-1)

int vmm_fail(struct vmm *vm, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
    va_end(ap);
    return -code;
}

const char *vmm_last_error(const vmm_t *vm)
{
    return vm->err;
}

const char *vmm_strerror(int code)
{
    switch (code < 0 ? -code : code) {
    case VMM_OK: return "success";
    case VMM_E_INVAL: return "invalid argument";
    case VMM_E_KVM_OPEN: return "KVM device missing or not accessible";
    case VMM_E_KVM_UNUSABLE: return "KVM device not usable";
    case VMM_E_KVM_IOCTL: return "KVM call failed";
    case VMM_E_NOMEM: return "out of host memory";
    case VMM_E_MEM_TOO_LARGE: return "guest memory larger than the host's";
    case VMM_E_NOT_BZIMAGE: return "not a bzImage";
    case VMM_E_TOO_BIG: return "does not fit in guest memory";
    case VMM_E_RANGE: return "guest address out of range";
    case VMM_E_THREAD: return "cannot start vCPU thread";
    case VMM_E_STATE: return "invalid state";
    case VMM_E_IO: return "cannot read file";
    case VMM_E_DEVICE: return "cannot create device";
    case VMM_E_BUSY: return "device busy";
    default: return "unknown error";
    }
}

const char *vmm_exit_reason_name(uint32_t reason)
{
    switch (reason) {
    case VMM_EXIT_NONE: return "none";
    case VMM_EXIT_POWEROFF: return "poweroff";
    case VMM_EXIT_RESET_I8042: return "i8042-reset";
    case VMM_EXIT_TRIPLE_FAULT: return "triple-fault";
    case VMM_EXIT_CRASH: return "crash";
    case VMM_EXIT_KILLED: return "killed";
    default: return "unknown";
    }
}

/* ---- stopping ------------------------------------------------------------ */

static void kick_all_locked(struct vmm *vm)
{
    for (uint32_t i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (v->run)
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        if (vm->threads_live && v->thread_started)
            pthread_kill(v->thread, vm->kick_signal);
    }
}

static void stop_detail(struct vmm *vm, uint32_t cpu, uint32_t reason, int32_t code,
                        uint32_t kvm_exit, uint64_t hw)
{
    pthread_mutex_lock(&vm->stop_lock);
    if (!__atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE)) {
        vm->result.reason = reason;
        vm->result.cpu = cpu;
        vm->result.exit_code = code;
        vm->result.kvm_exit_reason = kvm_exit;
        vm->result.hw_reason = hw;
        __atomic_store_n(&vm->stop_requested, 1, __ATOMIC_RELEASE);
    }
    kick_all_locked(vm);
    pthread_mutex_unlock(&vm->stop_lock);
}

static void ev_stop(void *ctx, uint32_t cpu, uint32_t reason, int32_t code)
{
    stop_detail(ctx, cpu, reason, code, 0, 0);
}

static void ev_set_irq(void *ctx, uint32_t irq, int level)
{
    struct vmm *vm = ctx;
    struct kvm_irq_level l = {.irq = irq, .level = (uint32_t)level};
    /* fails only if the irqchip is gone; the guest then sees no interrupt */
    (void)ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
}

static int ev_stopping(void *ctx)
{
    struct vmm *vm = ctx;
    return __atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE);
}

void vmm_stop(vmm_t *vm)
{
    stop_detail(vm, HOST_CPU, VMM_EXIT_KILLED, 0, 0, 0);
}

/* ---- the vCPU loop --------------------------------------------------------- */

static void count(uint64_t *c)
{
    __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    struct vmm *vm = v->vm;
    uint64_t off = run->io.data_offset;
    uint64_t size = run->io.size, n = run->io.count;
    int is_write = run->io.direction == KVM_EXIT_IO_OUT;

    if (size == 0 || size > 4 || off > vm->run_size || n > (vm->run_size - off) / size) {
        stop_detail(vm, v->id, VMM_EXIT_CRASH, 0, KVM_EXIT_IO, off);
        return;
    }
    count(is_write ? &v->counters.io_out : &v->counters.io_in);
    uint8_t *data = (uint8_t *)run + off;
    for (uint64_t i = 0; i < n; i++, data += size) {
        if (!bus_dispatch(&vm->pio, v->id, run->io.port, data, (uint32_t)size, is_write)) {
            count(&v->counters.unhandled_io);
            if (!is_write)
                memset(data, 0xff, size);
        }
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t len = run->mmio.len;
    if (len == 0 || len > sizeof(run->mmio.data)) {
        stop_detail(v->vm, v->id, VMM_EXIT_CRASH, 0, KVM_EXIT_MMIO, len);
        return;
    }
    count(run->mmio.is_write ? &v->counters.mmio_write : &v->counters.mmio_read);
    if (!bus_dispatch(&v->vm->mmio, v->id, run->mmio.phys_addr, run->mmio.data, len,
                      run->mmio.is_write)) {
        count(&v->counters.unhandled_mmio);
        if (!run->mmio.is_write)
            memset(run->mmio.data, 0xff, len);
    }
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vmm *vm = v->vm;
    sigset_t set;

    /* only the kick (and faults) may interrupt this thread */
    sigfillset(&set);
    sigdelset(&set, vm->kick_signal);
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGILL);
    pthread_sigmask(SIG_SETMASK, &set, NULL);

    if (vm->seccomp) {
        int e = vcpu_seccomp();
        if (e < 0) {
            stop_detail(vm, v->id, VMM_EXIT_CRASH, e, 0, 0);
            return NULL;
        }
    }

    while (!__atomic_load_n(&vm->stop_requested, __ATOMIC_ACQUIRE)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                count(&v->counters.interrupted);
                continue;
            }
            stop_detail(vm, v->id, VMM_EXIT_CRASH, -errno, 0, 0);
            break;
        }
        count(&v->counters.exits_total);
        struct kvm_run *run = v->run;
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            handle_io(v);
            break;
        case KVM_EXIT_MMIO:
            handle_mmio(v);
            break;
        case KVM_EXIT_HLT:
            count(&v->counters.hlt);
            break;
        case KVM_EXIT_INTR:
            count(&v->counters.interrupted);
            break;
        case KVM_EXIT_SHUTDOWN:
            count(&v->counters.shutdown);
            stop_detail(vm, v->id, VMM_EXIT_TRIPLE_FAULT, 0, KVM_EXIT_SHUTDOWN, 0);
            break;
        case KVM_EXIT_FAIL_ENTRY:
            stop_detail(vm, v->id, VMM_EXIT_CRASH, 0, KVM_EXIT_FAIL_ENTRY,
                        run->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            stop_detail(vm, v->id, VMM_EXIT_CRASH, 0, KVM_EXIT_INTERNAL_ERROR,
                        run->internal.suberror);
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
                stop_detail(vm, v->id, VMM_EXIT_POWEROFF, 0, KVM_EXIT_SYSTEM_EVENT, 0);
            else
                stop_detail(vm, v->id, VMM_EXIT_CRASH, 0, KVM_EXIT_SYSTEM_EVENT,
                            run->system_event.type);
            break;
        default:
            stop_detail(vm, v->id, VMM_EXIT_CRASH, 0, run->exit_reason, 0);
            break;
        }
    }
    return NULL;
}

void vmm_get_counters(const vmm_t *vm, struct vmm_counters *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < vm->ncpus; i++) {
        const struct vmm_counters *c = &vm->vcpus[i].counters;
#define ADD(f) out->f += __atomic_load_n(&c->f, __ATOMIC_RELAXED)
        ADD(exits_total); ADD(io_in); ADD(io_out); ADD(mmio_read); ADD(mmio_write);
        ADD(hlt); ADD(shutdown); ADD(interrupted); ADD(unhandled_io); ADD(unhandled_mmio);
#undef ADD
    }
    if (vm->devices_ready)
        serial_stats((struct serial *)&vm->serial, &out->serial_tx_bytes,
                     &out->serial_rx_bytes);
}

int vmm_run(vmm_t *vm, struct vmm_result *res)
{
    int rc = 0;
    if (vm->has_run)
        return vmm_fail(vm, VMM_E_STATE, "the VM has already run");
    if (!vm->entry_set)
        return vmm_fail(vm, VMM_E_STATE, "nothing to run: load a kernel or set an entry first");
    vm->has_run = 1;
    int64_t t0 = monotonic_ns();
    boot_timer_start(&vm->timer);

    pthread_mutex_lock(&vm->stop_lock);
    vm->threads_live = 1;
    for (uint32_t i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        int e = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (e != 0) {
            rc = vmm_fail(vm, VMM_E_THREAD, "cannot start the thread of vCPU %u: %s", i,
                          strerror(e));
            break;
        }
        v->thread_started = 1;
    }
    pthread_mutex_unlock(&vm->stop_lock);
    if (rc < 0)
        stop_detail(vm, HOST_CPU, VMM_EXIT_CRASH, rc, 0, 0);

    for (uint32_t i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i].thread_started)
            pthread_join(vm->vcpus[i].thread, NULL);

    pthread_mutex_lock(&vm->stop_lock);
    vm->threads_live = 0;
    for (uint32_t i = 0; i < vm->ncpus; i++)
        vm->vcpus[i].thread_started = 0;
    pthread_mutex_unlock(&vm->stop_lock);

    if (res) {
        *res = vm->result;
        res->run_ns = monotonic_ns() - t0;
        res->boot_done_ns = __atomic_load_n(&vm->timer.done_ns, __ATOMIC_ACQUIRE);
        res->boot_done_value = __atomic_load_n(&vm->timer.value, __ATOMIC_RELAXED);
        vmm_get_counters(vm, &res->counters);
    }
    return rc;
}

/* ---- guest memory access for the caller --------------------------------- */

int vmm_load_raw(vmm_t *vm, uint64_t gpa, const uint8_t *data, size_t len)
{
    void *p = gpa_to_hva(vm, gpa, len);
    if (p == NULL || (data == NULL && len))
        return vmm_fail(vm, VMM_E_RANGE,
                        "0x%llx + %zu bytes is outside guest RAM (%llu MiB)",
                        (unsigned long long)gpa, len,
                        (unsigned long long)(vm->mem_bytes >> 20));
    if (len)
        memcpy(p, data, len);
    return 0;
}

int vmm_read_mem(const vmm_t *vm, uint64_t gpa, uint8_t *out, size_t len)
{
    const void *p = gpa_to_hva(vm, gpa, len);
    if (p == NULL || (out == NULL && len))
        return -VMM_E_RANGE;
    if (len)
        memcpy(out, p, len);
    return 0;
}

int vmm_set_entry(vmm_t *vm, uint32_t mode, uint64_t entry, uint64_t esi)
{
    if (vm->has_run)
        return vmm_fail(vm, VMM_E_STATE, "the VM has already run");
    int r = vcpu_set_entry(vm, &vm->vcpus[0], mode, entry, esi);
    if (r == 0)
        vm->entry_set = 1;
    return r;
}

int vmm_serial_input(vmm_t *vm, const uint8_t *data, size_t len)
{
    if (data == NULL && len)
        return vmm_fail(vm, VMM_E_INVAL, "no input buffer");
    size_t n = serial_input(&vm->serial, data, len);
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

int vmm_send_ctrl_alt_del(vmm_t *vm)
{
    if (i8042_ctrl_alt_del(&vm->i8042) < 0)
        return vmm_fail(vm, VMM_E_BUSY,
                        "the keyboard buffer is full: the guest is not reading its keyboard");
    return 0;
}

int vmm_get_e820(const vmm_t *vm, struct vmm_e820_entry *out, uint32_t max)
{
    return vmm_build_e820(vm, out, max);
}

/* ---- virtio devices ------------------------------------------------------- */

static void *mem_xlate(void *ctx, uint64_t gpa, uint64_t len)
{
    return gpa_to_hva(ctx, gpa, len);
}

static int device_slot_check(struct vmm *vm)
{
    if (vm->has_run)
        return vmm_fail(vm, VMM_E_STATE, "devices must be added before the VM runs");
    if (vm->nvdev >= VMM_MAX_DEVICES)
        return vmm_fail(vm, VMM_E_DEVICE, "at most %d virtio devices", VMM_MAX_DEVICES);
    return 0;
}

static int plug(struct vmm *vm, struct virtio_dev *d)
{
    d->slot = pci_add(&vm->pci, &d->pci);
    if (d->slot < 0)
        return vmm_fail(vm, VMM_E_DEVICE, "no free PCI slot");
    vm->vdev[vm->nvdev] = d;
    return (int)vm->nvdev++;
}

int vmm_add_disk(vmm_t *vm, int fd, int read_only)
{
    int r = device_slot_check(vm);
    if (r < 0)
        return r;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (own < 0)
        return vmm_fail(vm, VMM_E_DEVICE, "disk: %s", strerror(errno));
    struct virtio_blk *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        close(own);
        return vmm_fail(vm, VMM_E_NOMEM, "out of memory for a disk");
    }
    struct virtq_mem mem = {.xlate = mem_xlate, .ctx = vm};
    char err[128];
    if (virtio_blk_init(b, own, read_only, &vm->events, &mem, vm->vm_fd,
                        VMM_PCI_IRQ_BASE + vm->nvdev, err, sizeof(err)) < 0) {
        close(own);
        free(b);
        return vmm_fail(vm, VMM_E_DEVICE, "%s", err);
    }
    r = plug(vm, &b->dev);
    if (r < 0) {
        close(own);
        virtio_dev_destroy(&b->dev);
        free(b);
    }
    return r;
}

int vmm_add_net(vmm_t *vm, const char *tap, const uint8_t *mac)
{
    int r = device_slot_check(vm);
    if (r < 0)
        return r;
    if (tap == NULL || mac == NULL)
        return vmm_fail(vm, VMM_E_INVAL, "no TAP name or MAC address");
    struct virtio_net *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return vmm_fail(vm, VMM_E_NOMEM, "out of memory for a NIC");
    struct virtq_mem mem = {.xlate = mem_xlate, .ctx = vm};
    char err[160];
    if (virtio_net_init(n, tap, mac, &vm->events, &mem, vm->vm_fd,
                        VMM_PCI_IRQ_BASE + vm->nvdev, err, sizeof(err)) < 0) {
        free(n);
        return vmm_fail(vm, VMM_E_DEVICE, "%s", err);
    }
    if (virtio_net_start(n, err, sizeof(err)) < 0) {
        virtio_net_destroy(n);
        free(n);
        return vmm_fail(vm, VMM_E_DEVICE, "%s", err);
    }
    r = plug(vm, &n->dev);
    if (r < 0) {
        virtio_net_destroy(n);
        free(n);
    }
    return r;
}

int vmm_device_count(const vmm_t *vm)
{
    return (int)vm->nvdev;
}

int vmm_get_device(vmm_t *vm, uint32_t index, struct vmm_device_info *out)
{
    if (index >= vm->nvdev || out == NULL)
        return vmm_fail(vm, VMM_E_INVAL, "no device %u", index);
    struct virtio_dev *d = vm->vdev[index];
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&d->lock);
    out->kind = d->device_id;
    out->pci_slot = (uint32_t)d->slot;
    out->irq = d->irq;
    out->status = d->status;
    out->features = d->features;
    out->driver_features = d->driver_features;
    out->requests = d->stats.requests;
    out->errors = d->stats.errors;
    out->bytes_read = d->stats.bytes_read;
    out->bytes_written = d->stats.bytes_written;
    out->interrupts = d->stats.interrupts;
    if (d->device_id == VIRTIO_ID_NET)
        out->rx_dropped = ((struct virtio_net *)d)->rx_dropped;
    snprintf(out->last_error, sizeof(out->last_error), "%s", d->last_error);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* ---- creation and destruction -------------------------------------------- */

static void empty_handler(int sig)
{
    (void)sig;
}

/* The kick only has to interrupt KVM_RUN; keep any handler already there. */
static int ensure_kick_handler(int sig)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) < 0)
        return -1;
    if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = empty_handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

static int get_supported_cpuid(struct vmm *vm)
{
    for (uint32_t nent = 128; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
        if (c == NULL)
            return vmm_fail(vm, VMM_E_NOMEM, "out of memory for CPUID");
        c->nent = nent;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG)
            return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_GET_SUPPORTED_CPUID: %s",
                            strerror(e));
    }
    return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

/*
 * Guest RAM: anonymous, 2 MiB aligned and marked for transparent huge pages,
 * so that KVM can map it with large pages (fewer nested page faults; QEMU
 * does the same).  Exactly mem_bytes stay mapped.
 */
static int map_guest_ram(struct vmm *vm)
{
    const uint64_t align = 2ULL << 20;
    uint8_t *raw = mmap(NULL, vm->mem_bytes + align, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return vmm_fail(vm, VMM_E_NOMEM, "cannot map %llu MiB of guest memory: %s",
                        (unsigned long long)(vm->mem_bytes >> 20), strerror(errno));
    uint64_t head = (align - ((uintptr_t)raw & (align - 1))) & (align - 1);
    if (head)
        munmap(raw, head);
    if (align - head)
        munmap(raw + head + vm->mem_bytes, align - head);
    vm->ram = raw + head;
    (void)madvise(vm->ram, vm->mem_bytes, MADV_HUGEPAGE); /* advice only */
    return 0;
}

static int set_region(struct vmm *vm, uint32_t slot, uint64_t gpa, uint64_t size,
                      void *host)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_USER_MEMORY_REGION: %s",
                        strerror(errno));
    return 0;
}

static int create_vcpu(struct vmm *vm, uint32_t id)
{
    struct vcpu *v = &vm->vcpus[id];
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_CREATE_VCPU %u: %s", id, strerror(errno));
    void *run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "mmap of vCPU %u run area: %s", id,
                        strerror(errno));
    v->run = run;
    int r = vcpu_setup_cpuid(vm, v);
    if (r == 0)
        r = vcpu_setup_lapic(vm, v);
    return r;
}

static int open_kvm(struct vmm *vm, const char *path)
{
    vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0)
        return vmm_fail(vm, VMM_E_KVM_OPEN, "cannot open %s: %s", path, strerror(errno));
    int v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (v < 0)
        return vmm_fail(vm, VMM_E_KVM_UNUSABLE, "%s is not a KVM device: %s", path,
                        strerror(errno));
    if (v != KVM_API_VERSION_EXPECTED)
        return vmm_fail(vm, VMM_E_KVM_UNUSABLE, "%s speaks KVM API %d, not %d", path, v,
                        KVM_API_VERSION_EXPECTED);
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
            return vmm_fail(vm, VMM_E_KVM_UNUSABLE, "%s lacks %s", path, caps[i].name);
    int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run))
        return vmm_fail(vm, VMM_E_KVM_UNUSABLE, "KVM_GET_VCPU_MMAP_SIZE: %s",
                        sz < 0 ? strerror(errno) : "too small");
    vm->run_size = (size_t)sz;
    return 0;
}

static int setup(struct vmm *vm, const struct vmm_config *cfg)
{
    int r;
    const char *path = cfg->kvm_path ? cfg->kvm_path : "/dev/kvm";

    if (cfg->ncpus < 1 || cfg->ncpus > VMM_MAX_CPUS)
        return vmm_fail(vm, VMM_E_INVAL, "%u vCPUs requested; 1 to %d are supported",
                        cfg->ncpus, VMM_MAX_CPUS);
    if (cfg->mem_bytes < (16ULL << 20) || (cfg->mem_bytes & 0xfffff))
        return vmm_fail(vm, VMM_E_INVAL,
                        "guest memory must be a whole number of MiB, at least 16 MiB");
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t host = (pages > 0 && psz > 0) ? (uint64_t)pages * (uint64_t)psz : 0;
    if (host && cfg->mem_bytes > host)
        return vmm_fail(vm, VMM_E_MEM_TOO_LARGE,
                        "%llu MiB of guest memory requested but the host has only %llu MiB",
                        (unsigned long long)(cfg->mem_bytes >> 20),
                        (unsigned long long)(host >> 20));
    vm->ncpus = cfg->ncpus;
    vm->mem_bytes = cfg->mem_bytes;
    vm->kick_signal = cfg->kick_signal ? cfg->kick_signal : SIGRTMIN + 4;
    vm->seccomp = cfg->seccomp;
    if (ensure_kick_handler(vm->kick_signal) < 0)
        return vmm_fail(vm, VMM_E_INVAL, "cannot use signal %d to kick vCPUs: %s",
                        vm->kick_signal, strerror(errno));

    if ((r = open_kvm(vm, path)) < 0)
        return r;
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return vmm_fail(vm, VMM_E_KVM_UNUSABLE, "KVM_CREATE_VM on %s: %s", path,
                        strerror(errno));
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_TSS_ADDR: %s", strerror(errno));
    uint64_t idmap = IDENTITY_MAP_ADDR;
    (void)ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap); /* VMX only; optional */
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_CREATE_PIT2: %s", strerror(errno));

    /* RAM: [0, 3 GiB) low, the rest from 4 GiB, one host mapping */
    vm->low_bytes = vm->mem_bytes < VMM_MMIO_HOLE_START ? vm->mem_bytes : VMM_MMIO_HOLE_START;
    vm->high_bytes = vm->mem_bytes - vm->low_bytes;
    if ((r = map_guest_ram(vm)) < 0)
        return r;
    if ((r = set_region(vm, 0, 0, vm->low_bytes, vm->ram)) < 0)
        return r;
    if (vm->high_bytes &&
        (r = set_region(vm, 1, VMM_MMIO_HOLE_END, vm->high_bytes, vm->ram + vm->low_bytes)) < 0)
        return r;

    if ((r = get_supported_cpuid(vm)) < 0)
        return r;
    for (uint32_t i = 0; i < vm->ncpus; i++)
        if ((r = create_vcpu(vm, i)) < 0)
            return r;

    vm->events = (struct vm_events){
        .ctx = vm, .stop = ev_stop, .set_irq = ev_set_irq, .stopping = ev_stopping};
    if (serial_init(&vm->serial, &vm->pio, VMM_PORT_COM1, VMM_COM1_IRQ, cfg->console_out_fd,
                    &vm->events) < 0 ||
        i8042_init(&vm->i8042, &vm->pio, &vm->events) < 0 ||
        rtc_init(&vm->rtc, &vm->pio, VMM_PORT_RTC) < 0 ||
        boot_timer_init(&vm->timer, &vm->pio, VMM_PORT_BOOT_DONE) < 0 ||
        debug_exit_init(&vm->dbg, &vm->pio, VMM_PORT_DEBUG_EXIT, &vm->events) < 0 ||
        pci_init(&vm->pci, &vm->pio, &vm->mmio) < 0)
        return vmm_fail(vm, VMM_E_INVAL, "cannot register the devices");
    vm->devices_ready = 1;

    if ((r = boot_write_zero_page_base(vm)) < 0)
        return r;
    return mptable_write(vm, VMM_EBDA_ADDR, 0xa0000 - VMM_EBDA_ADDR);
}

int vmm_create(const struct vmm_config *cfg, vmm_t **out, char *msg, size_t msglen)
{
    if (out == NULL)
        return -VMM_E_INVAL;
    *out = NULL;
    struct vmm *vm = calloc(1, sizeof(*vm));
    if (vm == NULL) {
        if (msg && msglen)
            snprintf(msg, msglen, "out of memory");
        return -VMM_E_NOMEM;
    }
    vm->kvm_fd = vm->vm_fd = -1;
    for (uint32_t i = 0; i < VMM_MAX_CPUS; i++)
        vm->vcpus[i].fd = -1;
    pthread_mutex_init(&vm->stop_lock, NULL);

    int r = cfg ? setup(vm, cfg) : vmm_fail(vm, VMM_E_INVAL, "no configuration");
    if (r < 0) {
        if (msg && msglen)
            snprintf(msg, msglen, "%s", vm->err);
        vmm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

void vmm_destroy(vmm_t *vm)
{
    if (vm == NULL)
        return;
    for (uint32_t i = 0; i < VMM_MAX_CPUS; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (v->run)
            munmap(v->run, vm->run_size);
        if (v->fd >= 0)
            close(v->fd);
    }
    for (uint32_t i = 0; i < vm->nvdev; i++) {
        struct virtio_dev *d = vm->vdev[i];
        if (d->device_id == VIRTIO_ID_NET) {
            virtio_net_destroy((struct virtio_net *)d);
        } else {
            close(((struct virtio_blk *)d)->fd);
            virtio_dev_destroy(d);
        }
        free(d);
    }
    if (vm->devices_ready) {
        pci_destroy(&vm->pci);
        serial_destroy(&vm->serial);
        i8042_destroy(&vm->i8042);
        rtc_destroy(&vm->rtc);
    }
    if (vm->ram)
        munmap(vm->ram, vm->mem_bytes);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    free(vm->cpuid);
    pthread_mutex_destroy(&vm->stop_lock);
    free(vm);
}
