/* memory.c - guest RAM layout: the only guest-physical -> host translation. */
#include "vmm_internal.h"

/*
 * Host pointer for the guest-physical range [gpa, gpa + len), or NULL when
 * any byte of it is outside guest RAM (or the range wraps).  RAM is one host
 * mapping: [0, low) at guest 0 and the rest above the 32-bit MMIO hole.
 */
void *gpa_to_hva(const struct vmm *vm, uint64_t gpa, uint64_t len)
{
    if (gpa + len < gpa)
        return NULL;
    if (gpa + len <= vm->low_bytes)
        return vm->ram + gpa;
    if (gpa >= VMM_MMIO_HOLE_END && gpa - VMM_MMIO_HOLE_END <= vm->high_bytes &&
        len <= vm->high_bytes - (gpa - VMM_MMIO_HOLE_END))
        return vm->ram + vm->low_bytes + (gpa - VMM_MMIO_HOLE_END);
    return NULL;
}

static void add(struct vmm_e820_entry *out, uint32_t max, uint32_t *n, uint64_t addr,
                uint64_t size, uint32_t type)
{
    if (*n < max)
        out[*n] = (struct vmm_e820_entry){addr, size, type};
    (*n)++;
}

/* The standard PC low-memory map: base RAM up to the EBDA, the EBDA and BIOS
 * area reserved, RAM from 1 MiB, the 32-bit hole, RAM above 4 GiB. */
int vmm_build_e820(const struct vmm *vm, struct vmm_e820_entry *out, uint32_t max)
{
    uint32_t n = 0;
    add(out, max, &n, 0, VMM_EBDA_ADDR, 1);
    add(out, max, &n, VMM_EBDA_ADDR, 0xa0000 - VMM_EBDA_ADDR, 2);
    add(out, max, &n, 0xf0000, 0x10000, 2);
    add(out, max, &n, VMM_KERNEL_ADDR, vm->low_bytes - VMM_KERNEL_ADDR, 1);
    if (vm->high_bytes)
        add(out, max, &n, VMM_MMIO_HOLE_END, vm->high_bytes, 1);
    return (int)n;
}
