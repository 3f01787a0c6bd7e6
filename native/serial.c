/* serial.c - 16550A UART (COM1): transmit to a host fd, receive from a FIFO. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "vmm_internal.h"

enum {
    UART_RX = 0, UART_TX = 0, UART_DLL = 0,
    UART_IER = 1, UART_DLM = 1,
    UART_IIR = 2, UART_FCR = 2,
    UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static uint8_t iir_locked(const struct serial *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
    if ((s->ier & IER_RDI) && s->rx_count)
        return fifo | IIR_RDI;
    if ((s->ier & IER_THRI) && s->thr_pending)
        return fifo | IIR_THRI;
    return fifo | IIR_NO_INT;
}

static void update_irq_locked(struct serial *s)
{
    int level = !(iir_locked(s) & IIR_NO_INT);
    if (level != s->irq_level) {
        s->irq_level = level;
        s->ev.set_irq(s->ev.ctx, s->irq, level);
    }
}

static void rx_push_locked(struct serial *s, uint8_t c)
{
    if (s->rx_count == SERIAL_RX_CAP)
        return;
    s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_CAP] = c;
    s->rx_count++;
    s->rx_bytes++;
}

static void transmit_locked(struct serial *s, uint8_t c)
{
    s->tx_bytes++;
    if (s->mcr & MCR_LOOP) {
        rx_push_locked(s, c);
        return;
    }
    if (s->out_fd < 0)
        return;
    for (;;) {
        ssize_t n = write(s->out_fd, &c, 1);
        if (n == 1 || (n < 0 && errno != EINTR))
            return; /* a host-side error drops the byte, like a cut cable */
        if (s->ev.stopping(s->ev.ctx))
            return; /* kicked while the host side is blocked: do not hang the stop */
    }
}

static uint8_t msr_locked(const struct serial *s)
{
    if (!(s->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t m = 0;
    if (s->mcr & MCR_RTS) m |= MSR_CTS;
    if (s->mcr & MCR_DTR) m |= MSR_DSR;
    if (s->mcr & MCR_OUT1) m |= MSR_RI;
    if (s->mcr & MCR_OUT2) m |= MSR_DCD;
    return m;
}

static uint8_t read_reg_locked(struct serial *s, uint64_t reg)
{
    uint8_t v = 0;
    switch (reg) {
    case UART_RX:
        if (s->lcr & LCR_DLAB)
            return s->dll;
        if (s->rx_count) {
            v = s->rx[s->rx_head];
            s->rx_head = (s->rx_head + 1) % SERIAL_RX_CAP;
            s->rx_count--;
        }
        return v;
    case UART_IER:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case UART_IIR:
        v = iir_locked(s);
        if ((v & 0x0f) == IIR_THRI)
            s->thr_pending = 0; /* reading IIR acknowledges THR empty */
        return v;
    case UART_LCR:
        return s->lcr;
    case UART_MCR:
        return s->mcr;
    case UART_LSR:
        v = LSR_THRE | LSR_TEMT | s->lsr_err | (s->rx_count ? LSR_DR : 0);
        s->lsr_err = 0;
        return v;
    case UART_MSR:
        return msr_locked(s);
    default:
        return s->scr;
    }
}

static void write_reg_locked(struct serial *s, uint64_t reg, uint8_t v)
{
    switch (reg) {
    case UART_TX:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
            return;
        }
        transmit_locked(s, v);
        s->thr_pending = 1; /* transmitted at once: THR is empty again */
        return;
    case UART_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
            return;
        }
        if ((v & IER_THRI) && !(s->ier & IER_THRI))
            s->thr_pending = 1; /* enabling THRI with an empty THR interrupts */
        s->ier = v & 0x0f;
        return;
    case UART_FCR:
        s->fcr = v & (FCR_ENABLE | 0xc0);
        if (v & FCR_CLEAR_RX) {
            s->rx_head = 0;
            s->rx_count = 0;
        }
        return;
    case UART_LCR:
        s->lcr = v;
        return;
    case UART_MCR:
        s->mcr = v & 0x1f;
        return;
    case UART_SCR:
        s->scr = v;
        return;
    default:
        return; /* LSR and MSR are read-only */
    }
}

static void serial_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                      uint32_t size, int is_write)
{
    struct serial *s = opaque;
    (void)cpu;
    pthread_mutex_lock(&s->lock);
    /* wider accesses touch consecutive registers, byte by byte */
    for (uint32_t i = 0; i < size; i++) {
        uint64_t reg = offset + i;
        if (reg > UART_SCR) {
            if (!is_write)
                data[i] = 0xff;
            continue;
        }
        if (is_write)
            write_reg_locked(s, reg, data[i]);
        else
            data[i] = read_reg_locked(s, reg);
    }
    update_irq_locked(s);
    pthread_mutex_unlock(&s->lock);
}

int serial_init(struct serial *s, struct bus *pio, uint16_t base, uint32_t irq,
                int out_fd, const struct vm_events *ev)
{
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        return -ENOMEM;
    s->ev = *ev;
    s->irq = irq;
    s->out_fd = out_fd;
    s->mcr = MCR_OUT2;
    s->lcr = 0x03; /* 8N1 */
    s->dll = 0x0c; /* 9600 baud */
    return bus_register(pio, base, 8, serial_io, s);
}

void serial_destroy(struct serial *s)
{
    pthread_mutex_destroy(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *data, size_t len)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    while (n < len && s->rx_count < SERIAL_RX_CAP)
        rx_push_locked(s, data[n++]);
    update_irq_locked(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

void serial_stats(struct serial *s, uint64_t *tx, uint64_t *rx)
{
    pthread_mutex_lock(&s->lock);
    *tx = s->tx_bytes;
    *rx = s->rx_bytes;
    pthread_mutex_unlock(&s->lock);
}
