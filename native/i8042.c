/*
 * i8042.c - the PC keyboard controller, as far as a microVM needs it, and a
 * minimal keyboard behind it.
 *
 * The controller: the reset line (command 0xfe, or output-port bit 0
 * cleared) stops the guest with VMM_EXIT_RESET_I8042, and enough of the
 * command set that Linux's probe finishes quickly.  No mouse: data for the
 * aux port is dropped.
 *
 * The keyboard answers what Linux's atkbd sends (ACK 0xfa to every command
 * and parameter byte; reset: 0xfa 0xaa; get ID: 0xfa 0xab 0x83) and types
 * the keys the host asks for (i8042_ctrl_alt_del).  Its bytes wait in a
 * small FIFO until the controller's output buffer is free; each byte that
 * reaches the output buffer raises IRQ 1 (an edge) when the configuration
 * byte enables the keyboard interrupt.  No translation (CTR bit 6 stays
 * clear): the guest gets scan code set 2.
 */
#include <errno.h>
#include <string.h>

#include "vmm_internal.h"

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08
#define STATUS_UNLOCKED 0x10 /* keyboard not inhibited (no "keylock active") */

#define CTR_KBD_INT 0x01
#define CTR_KBD_DISABLED 0x10
#define CTR_XLATE 0x40

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
    CMD_WRITE_KBD_OUT = 0xd2, /* next data byte: as if the keyboard sent it */
    CMD_WRITE_AUX_OUT = 0xd3, /* next data byte: as if the mouse sent it (dropped) */
    CMD_WRITE_AUX = 0xd4,     /* next data byte: to the mouse (dropped) */
    CMD_PULSE_RESET = 0xfe,
};

/* Keyboard commands (bytes written to the data port with no controller
 * command pending) and its answers. */
enum {
    KBD_SET_LEDS = 0xed,  /* + 1 parameter byte */
    KBD_ECHO = 0xee,
    KBD_SCAN_SET = 0xf0,  /* + 1 parameter byte; 0 = which set? */
    KBD_GET_ID = 0xf2,
    KBD_TYPEMATIC = 0xf3, /* + 1 parameter byte */
    KBD_ENABLE = 0xf4,
    KBD_DISABLE = 0xf5,
    KBD_DEFAULTS = 0xf6,
    KBD_RESET = 0xff,
    KBD_ACK = 0xfa,
    KBD_SELF_TEST_OK = 0xaa,
};

/* ---- the keyboard's FIFO and IRQ 1 --------------------------------------- */

static void kbd_clear_locked(struct i8042 *k)
{
    k->head = 0;
    k->count = 0;
}

/* Queue bytes the keyboard sends; all of them or (no room) none. */
static int kbd_send_locked(struct i8042 *k, const uint8_t *codes, uint32_t n)
{
    if (n > I8042_KBD_FIFO - k->count)
        return -ENOSPC;
    for (uint32_t i = 0; i < n; i++)
        k->fifo[(k->head + k->count++) % I8042_KBD_FIFO] = codes[i];
    return 0;
}

static void kbd_reply_locked(struct i8042 *k, const uint8_t *codes, uint32_t n)
{
    /* the host asked for nothing else: a reply that does not fit is lost,
     * as when a real keyboard's buffer overflows (the driver retries) */
    (void)kbd_send_locked(k, codes, n);
}

/*
 * Move the next keyboard byte into a free output buffer (unless the
 * keyboard port is disabled) and raise IRQ 1 on each new keyboard byte
 * there, if the guest enabled the keyboard interrupt.
 */
static void kbd_update_locked(struct i8042 *k)
{
    if (!k->out_full && k->count && !(k->ctr & CTR_KBD_DISABLED)) {
        k->out = k->fifo[k->head];
        k->head = (k->head + 1) % I8042_KBD_FIFO;
        k->count--;
        k->out_full = 1;
        k->out_kbd = 1;
    }
    int level = k->out_full && k->out_kbd && (k->ctr & CTR_KBD_INT);
    if (level && !k->irq_level) {
        k->ev.set_irq(k->ev.ctx, VMM_I8042_KBD_IRQ, 1);
        k->ev.set_irq(k->ev.ctx, VMM_I8042_KBD_IRQ, 0);
    }
    k->irq_level = level;
}

static void kbd_command(struct i8042 *k, uint8_t v)
{
    static const uint8_t ack[] = {KBD_ACK};
    uint8_t param_of = k->kbd_pending;
    k->kbd_pending = 0;
    if (param_of == KBD_SCAN_SET && v == 0) {
        static const uint8_t set2[] = {KBD_ACK, 0x02};
        kbd_reply_locked(k, set2, sizeof(set2));
        return;
    }
    if (param_of) { /* LEDs, scan code set, typematic rate: accepted */
        kbd_reply_locked(k, ack, sizeof(ack));
        return;
    }
    switch (v) {
    case KBD_SET_LEDS:
    case KBD_SCAN_SET:
    case KBD_TYPEMATIC:
        k->kbd_pending = v;
        kbd_reply_locked(k, ack, sizeof(ack));
        break;
    case KBD_ECHO:
        kbd_reply_locked(k, &v, 1);
        break;
    case KBD_GET_ID: {
        static const uint8_t id[] = {KBD_ACK, 0xab, 0x83}; /* MF2 keyboard */
        kbd_reply_locked(k, id, sizeof(id));
        break;
    }
    case KBD_ENABLE:
    case KBD_DISABLE:
    case KBD_DEFAULTS:
        kbd_clear_locked(k); /* these clear the keyboard's buffer */
        kbd_reply_locked(k, ack, sizeof(ack));
        break;
    case KBD_RESET: {
        static const uint8_t reset[] = {KBD_ACK, KBD_SELF_TEST_OK};
        kbd_clear_locked(k);
        kbd_reply_locked(k, reset, sizeof(reset));
        break;
    }
    default:
        kbd_reply_locked(k, ack, sizeof(ack));
        break;
    }
}

/* ---- the controller -------------------------------------------------------- */

/* A controller reply takes the output buffer; a keyboard byte that was
 * waiting there goes back to the front of the keyboard's FIFO. */
static void put_out(struct i8042 *k, uint8_t v)
{
    if (k->out_full && k->out_kbd) {
        if (k->count == I8042_KBD_FIFO)
            k->count--; /* full: the newest byte makes room */
        k->head = (k->head + I8042_KBD_FIFO - 1) % I8042_KBD_FIFO;
        k->fifo[k->head] = k->out;
        k->count++;
    }
    k->out = v;
    k->out_full = 1;
    k->out_kbd = 0;
}

static void command(struct i8042 *k, uint32_t cpu, uint8_t cmd)
{
    switch (cmd) {
    case CMD_READ_CTR:
        put_out(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTPORT:
    case CMD_WRITE_KBD_OUT:
    case CMD_WRITE_AUX_OUT:
    case CMD_WRITE_AUX:
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
    case CMD_DISABLE_KBD: k->ctr |= CTR_KBD_DISABLED; break;
    case CMD_ENABLE_KBD: k->ctr &= (uint8_t)~CTR_KBD_DISABLED; break;
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
    switch (cmd) {
    case 0:
        kbd_command(k, v); /* no controller command waits: the byte is for the keyboard */
        break;
    case CMD_WRITE_CTR:
        k->ctr = v & (uint8_t)~CTR_XLATE; /* no translation: scan code set 2 */
        break;
    case CMD_WRITE_OUTPORT:
        if (!(v & 0x01))
            k->ev.stop(k->ev.ctx, cpu, VMM_EXIT_RESET_I8042, 0);
        break;
    case CMD_WRITE_KBD_OUT:
        kbd_reply_locked(k, &v, 1);
        break;
    default:
        break; /* for the aux port: no mouse is attached */
    }
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
        k->out_kbd = 0;
        k->irq_level = 0; /* the next keyboard byte is a new edge */
    }
    kbd_update_locked(k);
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
        data[0] = STATUS_SYS | STATUS_UNLOCKED | (k->pending ? STATUS_CMD : 0) |
                  (k->out_full ? STATUS_OBF : 0);
    }
    kbd_update_locked(k);
    pthread_mutex_unlock(&k->lock);
}

/* ---- the host's side ------------------------------------------------------- */

int i8042_ctrl_alt_del(struct i8042 *k)
{
    /* scan code set 2: press Ctrl, Alt, Delete; release Delete, Alt, Ctrl */
    static const uint8_t keys[] = {
        0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14,
    };
    pthread_mutex_lock(&k->lock);
    int r = kbd_send_locked(k, keys, sizeof(keys));
    kbd_update_locked(k);
    pthread_mutex_unlock(&k->lock);
    return r;
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
