/*
 * smp: the boot CPU starts the second vCPU with INIT + SIPI through its local
 * APIC; the AP (in real mode at the SIPI vector) reads its APIC id from CPUID
 * and stores id + 1 at AP_FLAG.  The BSP waits for it and prints "ap=<id>".
 */
#include "guest.h"
#define APIC 0xfee00000
#define APIC_SVR 0xf0
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310
#define AP_FLAG 0x600
#define TRAMPOLINE (GUEST_LOAD + 0x1000)
    .code32
    .globl start
start:
    movl $0, AP_FLAG
    movl $0x1ff, APIC + APIC_SVR           /* software-enable the local APIC */
    movl $(1 << 24), APIC + APIC_ICR_HI    /* destination: APIC id 1 */
    movl $0x4500, APIC + APIC_ICR_LO       /* INIT, assert */
    mov $2, %ecx
1:  movl $(1 << 24), APIC + APIC_ICR_HI
    movl $(0x4600 | (TRAMPOLINE >> 12)), APIC + APIC_ICR_LO   /* STARTUP */
    loop 1b
    mov $500000, %ecx
2:  mov AP_FLAG, %eax
    test %eax, %eax
    jnz 3f
    pause
    loop 2b
    mov $'?', %al
    putc_al
    poweroff 1
3:  mov %al, %bl
    mov $'a', %al
    putc_al
    mov $'p', %al
    putc_al
    mov $'=', %al
    putc_al
    mov %bl, %al
    add $('0' - 1), %al
    putc_al
    mov $'\n', %al
    putc_al
    poweroff 0

    .org 0x1000
    .code16
ap_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov $1, %eax
    cpuid
    shr $24, %ebx
    inc %ebx
    mov %ebx, AP_FLAG
5:  hlt
    jmp 5b
