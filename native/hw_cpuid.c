#include "hw_cpuid.h"

int appliance_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
#if defined(__x86_64__) || defined(__i386__)
    uint32_t a = leaf, b = 0, c = subleaf, d = 0;

    /* Plain CPUID, no range check: <cpuid.h>'s __get_cpuid_count() refuses
     * leaves above the basic maximum, which hides the hypervisor range. */
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
    return 0;
#else
    (void)leaf;
    (void)subleaf;
    out[0] = out[1] = out[2] = out[3] = 0;
    return -1;
#endif
}
