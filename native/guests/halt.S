/* halt: halts forever with interrupts off (the vCPU sleeps inside KVM). */
#include "guest.h"
    .code32
    .globl start
start:
    cli
1:  hlt
    jmp 1b
