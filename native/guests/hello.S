/* hello: prints a line on COM1, writes the boot-done port, powers off with 7. */
#include "guest.h"
    .code32
    .globl start
start:
    mov $msg, %esi
next:
    lodsb
    test %al, %al
    jz done
    putc_al
    jmp next
done:
    mov $0x42, %al
    mov $VMM_PORT_BOOT_DONE, %dx
    out %al, %dx
    poweroff 7
msg:
    .asciz "hello from the guest\n"
