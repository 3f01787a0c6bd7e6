/* vcpu.c - per-vCPU set-up: CPUID, local APIC LINT pins, entry registers. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm_internal.h"

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define PDE_PRESENT 0x1ULL
#define PDE_RW 0x2ULL
#define PDE_PS 0x80ULL

/* CPUID as KVM supports it, with this vCPU's APIC id and the topology. */
int vcpu_setup_cpuid(struct vmm *vm, struct vcpu *v)
{
    struct kvm_cpuid2 *c = vm->cpuid;
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffU) | (v->id << 24) | ((vm->ncpus & 0xff) << 16);
            if (vm->ncpus > 1)
                e->edx |= 1U << 28; /* HTT: the count in EBX[23:16] is valid */
            e->ecx |= 1U << 31;     /* running under a hypervisor */
            break;
        case 0xb:
        case 0x1f:
            e->edx = v->id;
            break;
        default:
            break;
        }
    }
    if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_CPUID2 on vCPU %u: %s", v->id,
                        strerror(errno));
    return 0;
}

/* LINT0 = ExtINT (legacy PIC), LINT1 = NMI, as the MP table declares. */
int vcpu_setup_lapic(struct vmm *vm, struct vcpu *v)
{
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_GET_LAPIC: %s", strerror(errno));
    uint32_t lint0, lint1;
    memcpy(&lint0, &lapic.regs[0x350], 4);
    memcpy(&lint1, &lapic.regs[0x360], 4);
    lint0 = (lint0 & ~0x700U) | 0x700U; /* delivery mode ExtINT */
    lint1 = (lint1 & ~0x700U) | 0x400U; /* delivery mode NMI */
    memcpy(&lapic.regs[0x350], &lint0, 4);
    memcpy(&lapic.regs[0x360], &lint1, 4);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_LAPIC: %s", strerror(errno));
    return 0;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, int code64)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->s = 1;
    s->g = 1;
    s->l = code64 ? 1 : 0;
    s->db = code64 ? 0 : 1;
}

static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
    return ((uint64_t)(base & 0xff000000U) << 32) | ((uint64_t)(flags & 0xf0ffU) << 40) |
           ((uint64_t)(limit & 0x000f0000U) << 32) | ((uint64_t)(base & 0x00ffffffU) << 16) |
           (uint64_t)(limit & 0x0000ffffU);
}

/* GDT per the boot protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18, TSS = 0x20. */
static int write_gdt(struct vmm *vm, int long_mode)
{
    uint64_t gdt[5] = {
        0,
        0,
        gdt_entry(long_mode ? 0xa09b : 0xc09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0x67),
    };
    void *p = gpa_to_hva(vm, VMM_GDT_ADDR, sizeof(gdt));
    if (p == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "GDT outside guest RAM");
    memcpy(p, gdt, sizeof(gdt));
    return 0;
}

/* Identity map of the first 4 GiB with 2 MiB pages: PML4, PDPT, 4 PDs. */
static int write_page_tables(struct vmm *vm)
{
    const uint64_t pml4_gpa = VMM_PML4_ADDR, pdpt_gpa = pml4_gpa + 0x1000,
                   pd_gpa = pml4_gpa + 0x2000;
    uint64_t *pml4 = gpa_to_hva(vm, pml4_gpa, 0x1000);
    uint64_t *pdpt = gpa_to_hva(vm, pdpt_gpa, 0x1000);
    uint64_t *pd = gpa_to_hva(vm, pd_gpa, 4 * 0x1000);
    if (pml4 == NULL || pdpt == NULL || pd == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "page tables outside guest RAM");
    memset(pml4, 0, 0x1000);
    memset(pdpt, 0, 0x1000);
    pml4[0] = pdpt_gpa | PDE_PRESENT | PDE_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (pd_gpa + i * 0x1000) | PDE_PRESENT | PDE_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PDE_PRESENT | PDE_RW | PDE_PS;
    return 0;
}

int vcpu_set_entry(struct vmm *vm, struct vcpu *v, uint32_t mode, uint64_t entry,
                   uint64_t esi)
{
    struct kvm_sregs sregs;
    struct kvm_regs regs;
    int r;

    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_GET_SREGS: %s", strerror(errno));
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;

    switch (mode) {
    case VMM_ENTRY_REAL16:
        if (entry >= 0x100000)
            return vmm_fail(vm, VMM_E_INVAL, "real-mode entry 0x%llx above 1 MiB",
                            (unsigned long long)entry);
        sregs.cs.selector = (uint16_t)(entry >> 4);
        sregs.cs.base = (entry >> 4) << 4;
        regs.rip = entry & 0xf;
        break;
    case VMM_ENTRY_PROT32:
    case VMM_ENTRY_LONG64: {
        int lm = mode == VMM_ENTRY_LONG64;
        if (!lm && entry > 0xffffffffULL)
            return vmm_fail(vm, VMM_E_INVAL, "32-bit entry 0x%llx above 4 GiB",
                            (unsigned long long)entry);
        if ((r = write_gdt(vm, lm)) < 0)
            return r;
        sregs.gdt.base = VMM_GDT_ADDR;
        sregs.gdt.limit = 5 * 8 - 1;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        flat_segment(&sregs.cs, 0x10, 0xb, lm);
        flat_segment(&sregs.ds, 0x18, 0x3, 0);
        sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
        memset(&sregs.tr, 0, sizeof(sregs.tr));
        sregs.tr.selector = 0x20;
        sregs.tr.limit = 0x67;
        sregs.tr.type = 0xb;
        sregs.tr.present = 1;
        sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & ~CR0_PG;
        if (lm) {
            if ((r = write_page_tables(vm)) < 0)
                return r;
            sregs.cr3 = VMM_PML4_ADDR;
            sregs.cr4 |= CR4_PAE;
            sregs.cr0 |= CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        regs.rip = entry;
        regs.rsi = esi;
        break;
    }
    default:
        return vmm_fail(vm, VMM_E_INVAL, "unknown entry mode %u", mode);
    }
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_SREGS: %s", strerror(errno));
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return vmm_fail(vm, VMM_E_KVM_IOCTL, "KVM_SET_REGS: %s", strerror(errno));
    return 0;
}
