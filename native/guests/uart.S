/*
 * uart: the 16550A behaviour Linux's 8250 probe relies on.  Each check
 * prints its letter on success, '!' and power-off 1 on failure:
 *   i  IER keeps the four interrupt-enable bits it is given
 *   s  the scratch register holds a value
 *   l  loopback (MCR 0x1a) mirrors RTS/OUT2 into MSR as CTS/DCD (0x90)
 *   r  in loopback a transmitted byte comes back in RBR with LSR.DR set
 *   f  enabling the FIFO shows up in IIR bits 7:6
 *   d  with DLAB set, offsets 0/1 are the divisor latch
 */
#include "guest.h"
#define COM VMM_PORT_COM1
.macro outp reg, val
    mov $(COM + \reg), %dx
    mov $\val, %al
    out %al, %dx
.endm
.macro inp reg
    mov $(COM + \reg), %dx
    in %dx, %al
.endm
.macro ok letter
    mov $\letter, %al
    putc_al
.endm
    .code32
    .globl start
start:
    outp 1, 0x0f
    inp 1
    cmp $0x0f, %al
    jne bad
    outp 1, 0x00
    ok 'i'
    outp 7, 0xa5
    inp 7
    cmp $0xa5, %al
    jne bad
    ok 's'
    outp 4, 0x1a
    inp 6
    and $0xf0, %al
    cmp $0x90, %al
    jne bad_loop
    outp 0, 'Q'
    inp 5
    test $0x01, %al
    jz bad_loop
    inp 0
    cmp $'Q', %al
    jne bad_loop
    outp 4, 0x0b              /* loopback off before printing again */
    ok 'l'
    ok 'r'
    outp 2, 0x07
    inp 2
    and $0xc0, %al
    cmp $0xc0, %al
    jne bad
    ok 'f'
    outp 3, 0x83              /* DLAB on: 0/1 are DLL/DLM */
    outp 0, 0x01
    outp 1, 0x00
    inp 0
    cmp $0x01, %al
    jne bad
    outp 3, 0x03              /* DLAB off: IER is 0 again, not the DLM */
    inp 1
    test %al, %al
    jnz bad
    ok 'd'
    ok '\n'
    poweroff 0
bad_loop:
    outp 4, 0x0b
bad:
    ok '!'
    poweroff 1
