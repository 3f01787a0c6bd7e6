/* crash: jumps into unassigned (MMIO) space; KVM cannot fetch code there. */
#include "guest.h"
    .code32
    .globl start
start:
    mov $0xd0000000, %eax
    jmp *%eax
