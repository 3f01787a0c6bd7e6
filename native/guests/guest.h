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
