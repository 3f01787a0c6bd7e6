/* CPUID probe for appliance.hw: one instruction, no state, prints nothing. */
#ifndef APPLIANCE_HW_CPUID_H
#define APPLIANCE_HW_CPUID_H

#include <stdint.h>

/* Execute CPUID with EAX=leaf, ECX=subleaf and store EAX, EBX, ECX, EDX in
 * out[0..3]. Returns 0 on success, -1 when the build target has no CPUID
 * instruction (out is zeroed then). Leaves above the CPU's maximum are not
 * filtered: callers check the range leaves (0, 0x80000000, 0x40000000). */
int appliance_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

#endif
