/*
 * guest.h - shared macros of the freestanding test guests.  Each guest is a
 * flat binary loaded at GUEST_LOAD and entered in 32-bit flat protected mode
 * (unless its file says otherwise) with ESI pointing at the zero page.
 * No stack is set up: a guest that needs one loads GUEST_STACK into ESP.
 */
#include "../vmm.h"

#define GUEST_LOAD 0x10000
#define LSR (VMM_PORT_COM1 + 5)
#define GUEST_STACK 0x8000
#define GUEST_IDT 0x1000
#define GUEST_APIC 0xfee00000

/* Print the byte in %al on COM1 once the transmitter is empty (clobbers %dx, %ah). */
.macro putc_al
    mov %al, %ah
    mov $LSR, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    mov %ah, %al
    mov $VMM_PORT_COM1, %dx
    out %al, %dx
.endm

/* Power off with exit code \code (debug-exit port). */
.macro poweroff code
    mov $\code, %al
    mov $VMM_PORT_DEBUG_EXIT, %dx
    out %al, %dx
9:  hlt
    jmp 9b
.endm

/* Deliver IRQs through the 8259 PIC, legacy PC style: an IDT at GUEST_IDT with
 * a 32-bit interrupt gate (__BOOT_CS) for \vector -> \handler, loaded; the
 * local APIC on with LINT0 = ExtINT, so the PIC's output reaches the CPU; the
 * master PIC at vectors 0x20.., the slave at 0x28.., master lines masked by
 * \mask (a 0 bit lets that IRQ through), the slave all masked.  Clobbers %eax. */
.macro pic_irq vector, handler, mask
    mov $\handler, %eax
    mov %ax, GUEST_IDT + \vector * 8
    movw $0x10, GUEST_IDT + \vector * 8 + 2
    movw $0x8e00, GUEST_IDT + \vector * 8 + 4
    shr $16, %eax
    mov %ax, GUEST_IDT + \vector * 8 + 6
    jmp 7f
6:  .word 0x7ff
    .long GUEST_IDT
7:  lidt 6b
    movl $0x1ff, GUEST_APIC + 0xf0
    movl $0x700, GUEST_APIC + 0x350
    mov $0x11, %al          /* ICW1..4 */
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
    mov $\mask, %al
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1
.endm

/* The subroutine puts: print the NUL-terminated string at %esi on COM1
 * (clobbers %eax, %edx, %esi). */
.macro define_puts
puts:
2:  lodsb
    test %al, %al
    jz 3f
    putc_al
    jmp 2b
3:  ret
.endm
