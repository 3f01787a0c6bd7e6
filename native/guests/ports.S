/*
 * ports: port and MMIO exits.  Writes and reads an unassigned port and an
 * unassigned MMIO address (in the 32-bit hole); both reads must return all
 * ones.  Prints "io ok" / "mmio ok" (or "bad") and powers off.
 */
#include "guest.h"
#define UNUSED_PORT 0x1234
#define UNUSED_MMIO 0xd0000000
    .code32
    .globl start
start:
    mov $UNUSED_PORT, %dx
    mov $0x5a, %al
    out %al, %dx
    in %dx, %al
    cmp $0xff, %al
    jne bad
    mov $'i', %al
    putc_al
    mov $'o', %al
    putc_al
    movl $0x12345678, UNUSED_MMIO
    mov UNUSED_MMIO, %eax
    cmp $0xffffffff, %eax
    jne bad
    mov $' ', %al
    putc_al
    mov $'m', %al
    putc_al
    mov $'m', %al
    putc_al
    mov $'i', %al
    putc_al
    mov $'o', %al
    putc_al
    mov $'\n', %al
    putc_al
    poweroff 0
bad:
    mov $'!', %al
    putc_al
    poweroff 1
