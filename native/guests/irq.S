/*
 * irq: interrupt-driven serial input.  Programs the 8259 PIC (IRQ 4 ->
 * vector 0x24, everything else masked), enables the UART's receive
 * interrupt, prints "irq>" and halts; the handler echoes what arrived and
 * powers off after '\n'.  Nothing polls: input only arrives by interrupt.
 */
#include "guest.h"
#define VECTOR 0x24
    .code32
    .globl start
start:
    mov $GUEST_STACK, %esp
    pic_irq VECTOR, handler, 0xef  /* IRQ 4 only */
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

