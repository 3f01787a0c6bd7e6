/*
 * memory: walks the e820 map in the zero page (ESI), prints the number of
 * entries and the size of the last RAM entry in MiB (decimal), writes a
 * marker into the last dword of that RAM and then touches the first byte
 * past it, which is not RAM (an MMIO exit).
 */
#include "guest.h"
#define E820_COUNT 0x1e8
#define E820_TABLE 0x2d0
    .code32
    .globl start
start:
    mov $GUEST_STACK, %esp
    movzbl E820_COUNT(%esi), %ecx
    mov %cl, %al
    add $'0', %al
    putc_al
    mov $' ', %al
    putc_al
    lea E820_TABLE(%esi), %ebx
    xor %edi, %edi           /* end of the last RAM entry (low 32 bits) */
    xor %ebp, %ebp           /* its size */
1:  cmpl $1, 16(%ebx)
    jne 2f
    mov (%ebx), %edi
    mov 8(%ebx), %ebp
    add %ebp, %edi
2:  add $20, %ebx
    loop 1b
    movl $0x600dcafe, -4(%edi)
    mov -4(%edi), %eax
    cmp $0x600dcafe, %eax
    jne bad
    mov (%edi), %eax         /* past the end of RAM: unassigned, reads all ones */
    cmp $0xffffffff, %eax
    jne bad
    mov %ebp, %eax           /* print size >> 20 in decimal */
    shr $20, %eax
    mov $10, %ecx
    xor %ebx, %ebx
3:  xor %edx, %edx
    div %ecx
    push %edx
    inc %ebx
    test %eax, %eax
    jnz 3b
4:  pop %eax
    add $'0', %al
    putc_al
    dec %ebx
    jnz 4b
    mov $'\n', %al
    putc_al
    poweroff 0
bad:
    mov $'!', %al
    putc_al
    poweroff 1
