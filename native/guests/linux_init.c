/*
 * linux_init.c - /init of the tiny initramfs for Linux boot tests: stops the
 * monitor's boot timer (port 0x440), prints the userspace marker on the
 * console and powers off through the debug-exit port (0x501), which QEMU's
 * isa-debug-exit device understands too.  Built with gcc -static.
 *
 * Ports are written through /dev/port (the kernel does the OUT), not with
 * ioperm(): that keeps the same binary working under every monitor we compare.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#include "../vmm.h"

#define MARKER "APPLIANCE-L2-USERSPACE-OK"

static void port_write(int fd, uint16_t port, uint8_t value)
{
    if (fd >= 0 && pwrite(fd, &value, 1, port) != 1)
        perror("/dev/port");
}

int main(void)
{
    int port = open("/dev/port", O_WRONLY | O_CLOEXEC);
    if (port < 0)
        perror("/dev/port");
    port_write(port, VMM_PORT_BOOT_DONE, 1);
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char line[128];
    int n = snprintf(line, sizeof(line), "\n" MARKER " cpus=%d\n", cpus);
    if (write(STDOUT_FILENO, line, (size_t)n) < 0)
        return 1;
    tcdrain(STDOUT_FILENO); /* the UART sends by interrupt: wait until it is out */
    port_write(port, VMM_PORT_DEBUG_EXIT, 0);
    for (;;)
        pause();
}
