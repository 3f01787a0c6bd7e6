/* reset_port: resets through the i8042 output port (command 0xd1, bit 0 clear). */
#include "guest.h"
    .code32
    .globl start
start:
    mov $0xd1, %al
    out %al, $VMM_PORT_I8042_CMD
    mov $0xfe, %al            /* output port value: bit 0 (reset line) low */
    out %al, $VMM_PORT_I8042_DATA
    poweroff 99               /* not reached when the reset works */
