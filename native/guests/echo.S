/* echo: reads COM1 by polling LSR.DR and echoes each byte upper-cased until '\n'. */
#include "guest.h"
    .code32
    .globl start
start:
    mov $'>', %al
    putc_al
wait:
    mov $LSR, %dx
    in %dx, %al
    test $0x01, %al
    jz wait
    mov $VMM_PORT_COM1, %dx
    in %dx, %al
    cmp $'a', %al
    jb 1f
    cmp $'z', %al
    ja 1f
    sub $0x20, %al
1:  mov %al, %bl
    putc_al
    cmp $'\n', %bl
    jne wait
    poweroff 0
