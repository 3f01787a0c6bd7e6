/* spew: prints 'x' on COM1 forever. */
#include "guest.h"
    .code32
    .globl start
start:
    mov $'x', %al
    putc_al
    jmp start
