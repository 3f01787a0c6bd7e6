/*
 * linux_init.c - /init of the tiny initramfs for Linux boot tests: stops the
 * monitor's boot timer (port 0x440), prints the userspace marker on the
 * console and powers off through the debug-exit port (0x501), which QEMU's
 * isa-debug-exit device understands too.  Built with gcc -static.
 */
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <termios.h>
#include <unistd.h>

#include "../vmm.h"

#define MARKER "APPLIANCE-L2-USERSPACE-OK"

int main(void)
{
    if (ioperm(VMM_PORT_BOOT_DONE, 1, 1) == 0)
        outb(1, VMM_PORT_BOOT_DONE);
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char line[128];
    int n = snprintf(line, sizeof(line), "\n" MARKER " cpus=%d\n", cpus);
    if (write(STDOUT_FILENO, line, (size_t)n) < 0)
        return 1;
    tcdrain(STDOUT_FILENO); /* the UART sends by interrupt: wait until it is out */
    if (ioperm(VMM_PORT_DEBUG_EXIT, 1, 1) == 0)
        outb(0, VMM_PORT_DEBUG_EXIT);
    for (;;)
        pause();
}
