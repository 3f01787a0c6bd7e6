/*
 * rtc: reads the CMOS clock the way a BIOS-era OS does: waits for status A's
 * update-in-progress bit to clear, then prints hours and minutes "HH:MM"
 * (BCD, so each nibble is a digit) and power-off code = status D.
 */
#include "guest.h"
#define CMOS_INDEX VMM_PORT_RTC
#define CMOS_DATA (VMM_PORT_RTC + 1)
    .code32
    .globl start
start:
    mov $1000, %ecx
1:  mov $0x0a, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
    test $0x80, %al
    jz 2f
    loop 1b
    mov $'U', %al
    putc_al
    poweroff 1
2:  mov $0x04, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
    mov %al, %bl
    mov $0x02, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
    mov %al, %bh
    mov %bl, %al
    shr $4, %al
    add $'0', %al
    putc_al
    mov %bl, %al
    and $0x0f, %al
    add $'0', %al
    putc_al
    mov $':', %al
    putc_al
    mov %bh, %al
    shr $4, %al
    add $'0', %al
    putc_al
    mov %bh, %al
    and $0x0f, %al
    add $'0', %al
    putc_al
    mov $'\n', %al
    putc_al
    mov $0x0d, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
    mov $VMM_PORT_DEBUG_EXIT, %dx
    out %al, %dx
3:  hlt
    jmp 3b
