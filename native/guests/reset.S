/* reset: pulses the reset line through the i8042 (what Linux does for reboot=k). */
#include "guest.h"
    .code32
    .globl start
start:
    mov $VMM_PORT_I8042_CMD, %dx
1:  in %dx, %al          /* wait until the controller's input buffer is empty */
    test $0x02, %al
    jnz 1b
    mov $0xfe, %al
    out %al, %dx
    poweroff 99          /* not reached when the reset works */
