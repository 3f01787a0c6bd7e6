/* bus.c - port-I/O and MMIO dispatch: devices register ranges, exits look them up. */
#include <errno.h>

#include "vmm_internal.h"

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn,
                 void *opaque)
{
    if (len == 0 || base + len < base || fn == NULL)
        return -EINVAL;
    if (bus->count >= BUS_MAX_RANGES)
        return -ENOSPC;
    for (uint32_t i = 0; i < bus->count; i++) {
        const struct bus_range *r = &bus->ranges[i];
        if (base < r->base + r->len && r->base < base + len)
            return -EEXIST;
    }
    bus->ranges[bus->count++] = (struct bus_range){base, len, fn, opaque};
    return 0;
}

int bus_dispatch(const struct bus *bus, uint32_t cpu, uint64_t addr, uint8_t *data,
                 uint32_t size, int is_write)
{
    for (uint32_t i = 0; i < bus->count; i++) {
        const struct bus_range *r = &bus->ranges[i];
        if (addr >= r->base && addr - r->base < r->len) {
            r->fn(r->opaque, cpu, addr - r->base, data, size, is_write);
            return 1;
        }
    }
    return 0;
}
