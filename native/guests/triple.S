/* triple: an exception with an empty IDT escalates to a triple fault (shutdown). */
#include "guest.h"
    .code32
    .globl start
start:
    lidt idt_empty
    ud2
    poweroff 99          /* not reached */
idt_empty:
    .word 0
    .long 0
