/*
 * kbd: the keyboard behind the i8042, read by interrupt.  Programs the 8259
 * PIC (IRQ 1 -> vector 0x21, everything else masked), writes the
 * controller's configuration byte (keyboard port and its interrupt on, aux
 * off, translation asked for) and prints what reads back ("ctr=21": the
 * controller keeps translation off).  Then, with interrupts on: a byte for
 * the mouse (0xd4 0xf2, dropped), the keyboard's "get ID" (0xf2) and, after
 * its three answers, "reset" (0xff); prints "kbd> " after five answers and
 * powers off after eleven more bytes (the host's Ctrl-Alt-Delete).  The
 * handler reads one byte per interrupt, as Linux's does, and prints it in
 * hex ("?" for an interrupt without data).  It never returns: KVM's
 * instruction emulator (which a PVM-backed /dev/kvm needs) has no IRET
 * outside real mode, so the handler does the next step itself and idles
 * again on a fresh stack.
 */
#include "guest.h"
#define IDT 0x1000
#define VECTOR 0x21
#define APIC 0xfee00000
#define DATA VMM_PORT_I8042_DATA
#define CMD VMM_PORT_I8042_CMD
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
    /* 8259 master: ICW1..4, vector base 0x20; slave base 0x28; mask all but IRQ 1 */
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
    mov $0xfd, %al
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1

    /* configuration byte: keyboard interrupt, keyboard on, aux off, translate */
    mov $0x60, %al
    out %al, $CMD
    mov $0x61, %al
    out %al, $DATA
    /* read it back (polled: a controller reply raises no interrupt) */
    mov $0x20, %al
    out %al, $CMD
1:  in $CMD, %al
    test $0x01, %al
    jz 1b
    in $DATA, %al
    mov %al, %bl
    mov $ctr, %esi
    call puts
    call puthex

    /* a byte for the mouse: the controller drops it (no answer) */
    mov $0xd4, %al
    out %al, $CMD
    mov $0xf2, %al
    out %al, $DATA
    /* get ID: fa ab 83 */
    mov $0xf2, %al
    out %al, $DATA
idle:
    mov $GUEST_STACK, %esp
    sti
8:  hlt
    jmp 8b

handler:
    in $CMD, %al
    test $0x01, %al
    jz 3f
    in $DATA, %al
    mov %al, %bl
    call puthex
    incl count
    jmp 4f
3:  mov $'?', %al
    putc_al
4:  mov $0x20, %al           /* EOI */
    out %al, $0x20
    cmpl $3, count
    je 5f
    cmpl $5, count
    je 6f
    cmpl $16, count
    je 7f
    jmp idle
5:  mov $0xff, %al           /* reset: fa aa */
    out %al, $DATA
    jmp idle
6:  mov $prompt, %esi        /* the host types Ctrl-Alt-Delete: 11 bytes */
    call puts
    jmp idle
7:  poweroff 0

/* print %bl as two hex digits and a space (clobbers %eax, %edx) */
puthex:
    mov %bl, %al
    shr $4, %al
    call nibble
    mov %bl, %al
    and $0x0f, %al
    call nibble
    mov $' ', %al
    putc_al
    ret
nibble:
    cmp $10, %al
    jb 1f
    add $('a' - 10 - '0'), %al
1:  add $'0', %al
    putc_al
    ret

/* print the NUL-terminated string at %esi (clobbers %eax, %edx, %esi) */
puts:
2:  lodsb
    test %al, %al
    jz 3f
    putc_al
    jmp 2b
3:  ret

count: .long 0
ctr: .asciz "ctr="
prompt: .asciz "\r\nkbd> "
idtr:
    .word 0x7ff
    .long IDT
