/*
 * mptable.c - Intel MultiProcessor Specification 1.4 tables, so that a guest
 * without ACPI finds every vCPU, the I/O APIC and the ISA interrupt routing.
 * Written into the EBDA, which Linux scans (and e820 marks reserved).
 */
#include <string.h>

#include "vmm_internal.h"

#define APIC_DEFAULT_ADDR 0xfee00000U
#define IOAPIC_DEFAULT_ADDR 0xfec00000U
#define APIC_VERSION 0x14
#define IOAPIC_VERSION 0x11

struct __attribute__((packed)) mpf_intel {
    char signature[4]; /* "_MP_" */
    uint32_t physptr;
    uint8_t length;    /* in 16-byte units */
    uint8_t specification;
    uint8_t checksum;
    uint8_t feature[5];
};

struct __attribute__((packed)) mpc_table {
    char signature[4]; /* "PCMP" */
    uint16_t length;
    uint8_t spec;
    uint8_t checksum;
    char oem[8];
    char productid[12];
    uint32_t oemptr;
    uint16_t oemsize;
    uint16_t oemcount;
    uint32_t lapic;
    uint32_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
    uint8_t type;
    uint8_t apicid;
    uint8_t apicver;
    uint8_t cpuflag;
    uint32_t cpufeature;
    uint32_t featureflag;
    uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
    uint8_t type;
    uint8_t busid;
    char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
    uint8_t type;
    uint8_t apicid;
    uint8_t apicver;
    uint8_t flags;
    uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
    uint8_t type;
    uint8_t irqtype;
    uint16_t irqflag;
    uint8_t srcbus;
    uint8_t srcbusirq;
    uint8_t dstapic;
    uint8_t dstirq;
};

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

static uint8_t checksum(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + b[i]);
    return (uint8_t)(0x100 - sum);
}

int mptable_write(struct vmm *vm, uint64_t addr, uint64_t max_len)
{
    const uint32_t n = vm->ncpus;
    const size_t len = sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
                       n * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
                       sizeof(struct mpc_ioapic) + 16 * sizeof(struct mpc_intsrc) +
                       2 * sizeof(struct mpc_intsrc);
    if (len > max_len)
        return vmm_fail(vm, VMM_E_INVAL, "MP table for %u vCPUs does not fit", n);
    uint8_t *base = gpa_to_hva(vm, addr, len);
    if (base == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "MP table outside guest RAM");
    memset(base, 0, len);

    struct mpf_intel *mpf = (struct mpf_intel *)base;
    struct mpc_table *mpc = (struct mpc_table *)(mpf + 1);
    uint8_t *p = (uint8_t *)(mpc + 1);
    const uint8_t ioapic_id = (uint8_t)n;
    uint16_t count = 0;

    for (uint32_t i = 0; i < n; i++) {
        struct mpc_cpu c = {
            .type = MP_PROCESSOR,
            .apicid = (uint8_t)i,
            .apicver = APIC_VERSION,
            .cpuflag = (uint8_t)(1 | (i == 0 ? 2 : 0)), /* enabled, BSP */
            .cpufeature = 0x600,                        /* family 6 */
            .featureflag = (1U << 0) | (1U << 9),       /* FPU, APIC */
        };
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
        count++;
    }
    struct mpc_bus bus = {.type = MP_BUS, .busid = 0};
    memcpy(bus.bustype, "ISA   ", 6);
    memcpy(p, &bus, sizeof(bus));
    p += sizeof(bus);
    count++;
    struct mpc_ioapic io = {.type = MP_IOAPIC,
                            .apicid = ioapic_id,
                            .apicver = IOAPIC_VERSION,
                            .flags = 1,
                            .apicaddr = IOAPIC_DEFAULT_ADDR};
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    count++;
    for (uint8_t irq = 0; irq < 16; irq++) {
        struct mpc_intsrc s = {.type = MP_INTSRC, .irqtype = MP_INT, .srcbus = 0,
                               .srcbusirq = irq, .dstapic = ioapic_id, .dstirq = irq};
        memcpy(p, &s, sizeof(s));
        p += sizeof(s);
        count++;
    }
    struct mpc_intsrc lint0 = {.type = MP_LINTSRC, .irqtype = MP_EXTINT, .dstapic = 0xff,
                               .dstirq = 0};
    struct mpc_intsrc lint1 = {.type = MP_LINTSRC, .irqtype = MP_NMI, .dstapic = 0xff,
                               .dstirq = 1};
    memcpy(p, &lint0, sizeof(lint0));
    p += sizeof(lint0);
    memcpy(p, &lint1, sizeof(lint1));
    p += sizeof(lint1);
    count += 2;

    memcpy(mpc->signature, "PCMP", 4);
    mpc->length = (uint16_t)(p - (uint8_t *)mpc);
    mpc->spec = 4;
    memcpy(mpc->oem, "APPLNCE ", 8);
    memcpy(mpc->productid, "MICROVM     ", 12);
    mpc->oemcount = count;
    mpc->lapic = APIC_DEFAULT_ADDR;
    mpc->checksum = checksum(mpc, mpc->length);

    memcpy(mpf->signature, "_MP_", 4);
    mpf->physptr = (uint32_t)(addr + sizeof(*mpf));
    mpf->length = 1;
    mpf->specification = 4;
    mpf->checksum = checksum(mpf, sizeof(*mpf));
    return 0;
}
