/* real16: entered in real mode (CS:IP = 0x1000:0); prints "rm". */
#include "guest.h"
    .code16
    .globl start
start:
    mov $'r', %al
    putc_al
    mov $'m', %al
    putc_al
    mov $'\n', %al
    putc_al
    poweroff 0
