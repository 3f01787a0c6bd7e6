/*
 * debug_exit.c - power-off port (QEMU's isa-debug-exit at its default
 * address): a write powers the guest off, the value is its exit code.
 */
#include "vmm_internal.h"

static void debug_exit_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                          uint32_t size, int is_write)
{
    struct debug_exit *d = opaque;
    (void)offset;
    if (!is_write) {
        for (uint32_t i = 0; i < size; i++)
            data[i] = 0xff;
        return;
    }
    uint32_t v = 0;
    for (uint32_t i = 0; i < size && i < 4; i++)
        v |= (uint32_t)data[i] << (8 * i);
    d->ev.stop(d->ev.ctx, cpu, VMM_EXIT_POWEROFF, (int32_t)v);
}

int debug_exit_init(struct debug_exit *d, struct bus *pio, uint16_t port,
                    const struct vm_events *ev)
{
    d->ev = *ev;
    return bus_register(pio, port, 1, debug_exit_io, d);
}
