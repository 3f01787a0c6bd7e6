/*
 * boot_timer.c - the "boot done" port (like Firecracker's boot timer): the
 * guest's first write to it records the time since the run started.
 */
#include <time.h>

#include "vmm_internal.h"

int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void boot_timer_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                          uint32_t size, int is_write)
{
    struct boot_timer *t = opaque;
    (void)cpu;
    (void)offset;
    if (!is_write) {
        for (uint32_t i = 0; i < size; i++)
            data[i] = 0;
        return;
    }
    int64_t expected = -1;
    int64_t now = monotonic_ns() - __atomic_load_n(&t->start_ns, __ATOMIC_ACQUIRE);
    uint32_t v = 0;
    for (uint32_t i = 0; i < size && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    /* value first, then the time that publishes it */
    if (__atomic_load_n(&t->done_ns, __ATOMIC_ACQUIRE) == -1) {
        __atomic_store_n(&t->value, v, __ATOMIC_RELAXED);
        __atomic_compare_exchange_n(&t->done_ns, &expected, now, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED);
    }
}

void boot_timer_start(struct boot_timer *t)
{
    __atomic_store_n(&t->start_ns, monotonic_ns(), __ATOMIC_RELEASE);
}

int boot_timer_init(struct boot_timer *t, struct bus *pio, uint16_t port)
{
    t->start_ns = monotonic_ns();
    t->done_ns = -1;
    t->value = 0;
    return bus_register(pio, port, 1, boot_timer_io, t);
}
