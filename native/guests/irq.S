/*
 * irq: interrupt-driven serial input.  Programs the 8259 PIC (IRQ 4 ->
 * vector 0x24, everything else masked), enables the UART's receive
 * interrupt, prints "irq>" and halts; the handler echoes what arrived and
 * powers off after '\n'.  Nothing polls: input only arrives by interrupt.
 */
#include "guest.h"
#define IDT 0x1000
#define VECTOR 0x24
#define APIC 0xfee00000
    .code32
    .globl start
start:
    mov $GUEST_STACK, %esp
    /* IDT gate for VECTOR -> handler (32-bit interrupt gate, __BOOT_CS) */
    mov $handler, %eax
    mov %ax, IDT + VECTOR * 8
    movw $0x10, IDT + VECTOR * 8 + 2
    movw $0x8e00, IDT + VECTOR * 8 + 4
    shr $16, %eax
    mov %ax, IDT + VECTOR * 8 + 6
    lidt idtr
    /* local APIC on, LINT0 = ExtINT unmasked: the PIC's output reaches the CPU */
    movl $0x1ff, APIC + 0xf0
    movl $0x700, APIC + 0x350
    /* 8259 master: ICW1..4, vector base 0x20; slave base 0x28; mask all but IRQ 4 */
    mov $0x11, %al
    out %al, $0x20
    mov $0x20, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0x11, %al
    out %al, $0xa0
    mov $0x28, %al
    out %al, $0xa1
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0xa1
    mov $0xef, %al
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1
    /* UART: OUT2 (the PC's interrupt gate) and the receive interrupt */
    mov $(VMM_PORT_COM1 + 4), %dx
    mov $0x08, %al
    out %al, %dx
    mov $(VMM_PORT_COM1 + 1), %dx
    mov $0x01, %al
    out %al, %dx
    mov $'i', %al
    putc_al
    mov $'r', %al
    putc_al
    mov $'q', %al
    putc_al
    mov $'>', %al
    putc_al
    sti
idle:
    hlt
    jmp idle

handler:
    mov $(VMM_PORT_COM1 + 2), %dx
    in %dx, %al
    and $0x0f, %al
    cmp $0x04, %al           /* IIR must say "received data available" */
    jne bad
drain:
    mov $LSR, %dx
    in %dx, %al
    test $0x01, %al
    jz eoi
    mov $VMM_PORT_COM1, %dx
    in %dx, %al
    mov %al, %bl
    putc_al
    cmp $'\n', %bl
    jne drain
    poweroff 0
eoi:
    mov $0x20, %al
    out %al, $0x20
    iret
bad:
    mov $'!', %al
    putc_al
    poweroff 1

idtr:
    .word 0x7ff
    .long IDT
