/*
 * script: a tiny interpreter of device-access scripts, so that tests can
 * drive PCI and virtio devices from inside a real guest (every access below
 * is a real port or MMIO exit) while the test composes the driver's steps.
 *
 * The script is an array of 16-byte ops {op, a, b, c} at SCRIPT_ADDR:
 *   0 END     power off with exit code b
 *   1 W32     *(u32 *)a = b          2 W16   *(u16 *)a = b     3 W8  *(u8 *)a = b
 *   4 R32     *(u32 *)b = *(u32 *)a  8 R16   *(u16 *)b = ...   9 R8  *(u8 *)b = ...
 *   5 WAIT16  spin until *(u16 *)a == b, at most c rounds, else power off 3
 *   6 OUTL    outl(b, port a)        7 INL   *(u32 *)b = inl(port a)
 * Unknown ops power off with 2.
 */
#include "guest.h"
#define SCRIPT_ADDR 0x200000
    .code32
    .globl start
start:
    mov $SCRIPT_ADDR, %esi
next:
    mov 0(%esi), %eax
    mov 4(%esi), %edi
    mov 8(%esi), %ebx
    mov 12(%esi), %ecx
    add $16, %esi
    cmp $0, %eax
    je op_end
    cmp $1, %eax
    je op_w32
    cmp $2, %eax
    je op_w16
    cmp $3, %eax
    je op_w8
    cmp $4, %eax
    je op_r32
    cmp $5, %eax
    je op_wait16
    cmp $6, %eax
    je op_outl
    cmp $7, %eax
    je op_inl
    cmp $8, %eax
    je op_r16
    cmp $9, %eax
    je op_r8
    poweroff 2
op_end:
    mov %bl, %al
    mov $VMM_PORT_DEBUG_EXIT, %dx
    out %al, %dx
1:  hlt
    jmp 1b
op_w32:
    mov %ebx, (%edi)
    jmp next
op_w16:
    mov %bx, (%edi)
    jmp next
op_w8:
    mov %bl, (%edi)
    jmp next
op_r32:
    mov (%edi), %eax
    mov %eax, (%ebx)
    jmp next
op_r16:
    movw (%edi), %ax
    movw %ax, (%ebx)
    jmp next
op_r8:
    movb (%edi), %al
    movb %al, (%ebx)
    jmp next
op_wait16:
    movw (%edi), %ax
    cmp %bx, %ax
    je next
    pause
    loop op_wait16
    poweroff 3
op_outl:
    mov %edi, %edx
    mov %ebx, %eax
    out %eax, %dx
    jmp next
op_inl:
    mov %edi, %edx
    in %dx, %eax
    mov %eax, (%ebx)
    jmp next
