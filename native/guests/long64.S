/* long64: entered in 64-bit mode; uses a 64-bit register to prove it. */
#include "guest.h"
    .code64
    .globl start
start:
    movabs $0x4000000000000036, %rax   /* '6' with bit 62 set */
    bt $62, %rax
    jnc bad
    putc_al
    mov $'4', %al
    putc_al
    mov $'\n', %al
    putc_al
    poweroff 0
bad:
    poweroff 1
