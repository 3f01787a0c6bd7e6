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
#define VECTOR 0x21
#define DATA VMM_PORT_I8042_DATA
#define CMD VMM_PORT_I8042_CMD
    .code32
    .globl start
start:
    mov $GUEST_STACK, %esp
    pic_irq VECTOR, handler, 0xfd  /* IRQ 1 only */

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

    define_puts

count: .long 0
ctr: .asciz "ctr="
prompt: .asciz "\r\nkbd> "
