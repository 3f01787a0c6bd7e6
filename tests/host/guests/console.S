/* console: the test guest of VM templates. Entered like a bzImage's 32-bit
 * entry (ESI = zero page): prints a banner and the kernel command line from
 * the zero page, then echoes every byte typed, upper-cased, forever. */
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
    mov $prompt, %esi
    call puts
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
1:  putc_al
    jmp wait

/* print the NUL-terminated string at %esi */
puts:
2:  lodsb
    test %al, %al
    jz 3f
    putc_al
    jmp 2b
3:  ret

banner: .asciz "appliance test guest\r\ncmdline: "
prompt: .asciz "\r\nready> "
