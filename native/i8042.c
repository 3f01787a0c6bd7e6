/*
 * i8042.c - the PC keyboard controller, as far as a microVM needs it: the
 * reset line (command 0xfe, or output-port bit 0 cleared) stops the guest with
 * VMM_EXIT_RESET_I8042, and enough of the command set that Linux's probe
 * finishes quickly instead of timing out.  No keyboard or mouse.
 */
#include <errno.h>
#include <string.h>

#include "vmm_internal.h"

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08

enum {
    CMD_READ_CTR = 0x20,
    CMD_WRITE_CTR = 0x60,
    CMD_DISABLE_AUX = 0xa7,
    CMD_ENABLE_AUX = 0xa8,
    CMD_TEST_AUX = 0xa9,
    CMD_SELF_TEST = 0xaa,
    CMD_TEST_KBD = 0xab,
    CMD_DISABLE_KBD = 0xad,
    CMD_ENABLE_KBD = 0xae,
    CMD_READ_OUTPORT = 0xd0,
    CMD_WRITE_OUTPORT = 0xd1,
    CMD_PULSE_RESET = 0xfe,
};

static void put_out(struct i8042 *k, uint8_t v)
{
    k->out = v;
    k->out_full = 1;
}

static void command(struct i8042 *k, uint32_t cpu, uint8_t cmd)
{
    switch (cmd) {
    case CMD_READ_CTR:
        put_out(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTPORT:
        k->pending = cmd;
        break;
    case CMD_SELF_TEST:
        put_out(k, 0x55);
        break;
    case CMD_TEST_KBD:
    case CMD_TEST_AUX:
        put_out(k, 0x00);
        break;
    case CMD_READ_OUTPORT:
        put_out(k, 0x01);
        break;
    case CMD_DISABLE_KBD: k->ctr |= 0x10; break;
    case CMD_ENABLE_KBD: k->ctr &= (uint8_t)~0x10; break;
    case CMD_DISABLE_AUX: k->ctr |= 0x20; break;
    case CMD_ENABLE_AUX: k->ctr &= (uint8_t)~0x20; break;
    case CMD_PULSE_RESET:
        k->ev.stop(k->ev.ctx, cpu, VMM_EXIT_RESET_I8042, 0);
        break;
    default:
        break; /* other commands are accepted and ignored */
    }
}

static void data_write(struct i8042 *k, uint32_t cpu, uint8_t v)
{
    uint8_t cmd = k->pending;
    k->pending = 0;
    if (cmd == CMD_WRITE_CTR)
        k->ctr = v;
    else if (cmd == CMD_WRITE_OUTPORT && !(v & 0x01))
        k->ev.stop(k->ev.ctx, cpu, VMM_EXIT_RESET_I8042, 0);
    /* data for a device (no keyboard is attached) is dropped */
}

static void data_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                    uint32_t size, int is_write)
{
    struct i8042 *k = opaque;
    (void)offset;
    pthread_mutex_lock(&k->lock);
    if (is_write) {
        data_write(k, cpu, data[0]);
    } else {
        memset(data, 0, size);
        data[0] = k->out;
        k->out_full = 0;
    }
    pthread_mutex_unlock(&k->lock);
}

static void command_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                       uint32_t size, int is_write)
{
    struct i8042 *k = opaque;
    (void)offset;
    pthread_mutex_lock(&k->lock);
    if (is_write) {
        command(k, cpu, data[0]);
    } else {
        memset(data, 0, size);
        data[0] = STATUS_SYS | (k->pending ? STATUS_CMD : 0) | (k->out_full ? STATUS_OBF : 0);
    }
    pthread_mutex_unlock(&k->lock);
}

int i8042_init(struct i8042 *k, struct bus *pio, const struct vm_events *ev)
{
    memset(k, 0, sizeof(*k));
    if (pthread_mutex_init(&k->lock, NULL) != 0)
        return -ENOMEM;
    k->ev = *ev;
    k->ctr = 0x30; /* both ports disabled, no interrupts */
    /* data at 0x60, status/command at 0x64 (0x61, port B, is the PIT's) */
    int r = bus_register(pio, VMM_PORT_I8042_DATA, 1, data_io, k);
    if (r == 0)
        r = bus_register(pio, VMM_PORT_I8042_CMD, 1, command_io, k);
    return r;
}

void i8042_destroy(struct i8042 *k)
{
    pthread_mutex_destroy(&k->lock);
}
