/* spin: loops forever with interrupts off; only the host can stop it. */
#include "guest.h"
    .code32
    .globl start
start:
    cli
1:  jmp 1b
