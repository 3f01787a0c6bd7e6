/* console: the test guest of VM templates. Entered like a bzImage's 32-bit
 * entry (ESI = zero page): prints a banner and the kernel command line from
 * the zero page, then echoes every byte typed, upper-cased, forever.  It
 * also polls its keyboard and, like Linux with reboot=k, resets through the
 * i8042 when Delete arrives (Ctrl-Alt-Delete: the host's shutdown request).
 * Built with -DNO_KEYBOARD it never reads the keyboard: a guest that
 * ignores the request. */
#include "guest.h"
    .code32
    .globl start
start:
    mov $GUEST_STACK, %esp
    mov %esi, %edi              /* zero page */
    mov $banner, %esi
    call puts
    mov 0x228(%edi), %esi       /* cmd_line_ptr */
    call puts
#ifndef NO_KEYBOARD
    mov $0x60, %al              /* configuration byte: keyboard port on, no IRQ */
    out %al, $VMM_PORT_I8042_CMD
    mov $0x20, %al
    out %al, $VMM_PORT_I8042_DATA
#endif
    mov $prompt, %esi
    call puts
wait:
#ifndef NO_KEYBOARD
    in $VMM_PORT_I8042_CMD, %al
    test $0x01, %al
    jz 4f
    in $VMM_PORT_I8042_DATA, %al
    cmp $0x71, %al              /* Delete (scan code set 2, after 0xe0) */
    jne 4f
    mov $reboot, %esi
    call puts
    mov $0xfe, %al              /* pulse the reset line */
    out %al, $VMM_PORT_I8042_CMD
4:
#endif
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
1:  putc_al
    jmp wait

    define_puts

banner: .asciz "appliance test guest\r\ncmdline: "
prompt: .asciz "\r\nready> "
reboot: .asciz "\r\nctrl-alt-del: reset\r\n"
