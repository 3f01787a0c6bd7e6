/*
 * virtio_net.c - virtio network device on a host TAP interface.
 *
 * The TAP must already exist (the host attaches it to a bridge it manages);
 * we never create one.  It is opened with IFF_VNET_HDR and a 12-byte
 * header, the same layout as virtio_net_hdr with VERSION_1, so frames pass
 * between the TAP and guest buffers without copying.  No offloads are
 * offered: the header stays all zero except num_buffers.
 *
 * Transmit runs on the vCPU that wrote the notify register.  Receive runs
 * on one thread per device that waits (poll) for a frame on the TAP and a
 * guest buffer to put it in; a posted buffer or a stop wakes it through an
 * eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "virtio.h"

#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define NET_HDR 12
#define NET_QUEUE_SIZE 256
#define NET_MAX_FRAME (65536 + NET_HDR)
#define RXQ 0
#define TXQ 1

static void net_cfg_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t size)
{
    struct virtio_net *n = (struct virtio_net *)d;
    uint8_t cfg[10] = {0};
    memcpy(cfg, n->mac, 6);
    cfg[6] = 1; /* status: link up */
    cfg[8] = 1; /* max_virtqueue_pairs */
    for (uint32_t i = 0; i < size; i++)
        data[i] = off + i < sizeof(cfg) ? cfg[off + i] : 0;
}

static void wake(struct virtio_net *n)
{
    uint64_t one = 1;
    if (write(n->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the thread is awake already */
    }
}

static void transmit(struct virtio_net *n)
{
    struct virtio_dev *d = &n->dev;
    struct virtq *q = &d->vq[TXQ];
    struct virtq_chain c;
    int done = 0;
    for (uint32_t budget = q->size; budget > 0; budget--) { /* see virtio_blk_process */
        int r = virtq_pop(q, &d->mem, &c);
        if (r == 0)
            break;
        if (r < 0) {
            virtio_dev_error(d, "virtio-net transmit queue", -r);
            break;
        }
        d->stats.requests++;
        if (c.out_bytes < NET_HDR || c.out_bytes > NET_MAX_FRAME || c.n_in) {
            q->broken = VIRTQ_E_LAYOUT;
            virtio_dev_error(d, "virtio-net transmit", VIRTQ_E_LAYOUT);
            break;
        }
        /* the TAP may refuse a frame (full, malformed): dropped, as on a wire */
        ssize_t w = writev(n->tap_fd, c.iov, (int)c.n_out);
        if (w > NET_HDR)
            d->stats.bytes_written += (uint64_t)w - NET_HDR;
        virtq_push(q, c.head, 0);
        done++;
    }
    if (done)
        virtio_queue_irq(d, TXQ);
}

static void net_notify(struct virtio_dev *d, uint16_t queue)
{
    struct virtio_net *n = (struct virtio_net *)d;
    if (queue == TXQ)
        transmit(n);
    else
        wake(n);
}

static void net_driver_ok(struct virtio_dev *d)
{
    wake((struct virtio_net *)d);
}

static const struct virtio_ops net_ops = {
    .notify = net_notify,
    .driver_ok = net_driver_ok,
    .cfg_read = net_cfg_read,
};

/* Move one frame from the TAP into a guest buffer.  1: moved (or dropped),
 * 0: nothing to read, -1: no guest buffer (wait for the driver). */
static int receive_one(struct virtio_net *n)
{
    struct virtio_dev *d = &n->dev;
    struct virtq *q = &d->vq[RXQ];
    if (!virtio_driver_ok(d) || !q->enabled || q->broken)
        return -1;
    struct virtq_chain c;
    int r = virtq_pop(q, &d->mem, &c);
    if (r < 0) {
        virtio_dev_error(d, "virtio-net receive queue", -r);
        return -1;
    }
    if (r == 0)
        return -1;
    if (c.n_out || c.in_bytes < NET_HDR) {
        q->broken = VIRTQ_E_LAYOUT;
        virtio_dev_error(d, "virtio-net receive buffer", VIRTQ_E_LAYOUT);
        return -1;
    }
    ssize_t got = readv(n->tap_fd, c.iov, (int)c.n_in);
    if (got < 0) {
        virtq_unpop(q);
        return 0;
    }
    d->stats.requests++;
    uint16_t one = 1;
    virtq_chain_write(&c, 10, &one, 2); /* num_buffers */
    if (got > NET_HDR)
        d->stats.bytes_read += (uint64_t)got - NET_HDR;
    virtq_push(q, c.head, (uint32_t)got);
    virtio_queue_irq(d, RXQ);
    return 1;
}

static void *rx_thread(void *arg)
{
    struct virtio_net *n = arg;
    int want_tap = 1;
    while (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p[2] = {{.fd = n->wake_fd, .events = POLLIN},
                              {.fd = n->tap_fd, .events = POLLIN}};
        if (poll(p, want_tap ? 2 : 1, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            if (read(n->wake_fd, &v, sizeof(v)) < 0) {
                /* spurious: nothing to consume */
            }
            want_tap = 1;
        }
        if (!want_tap || !(p[1].revents & POLLIN))
            continue;
        pthread_mutex_lock(&n->dev.lock);
        int r = 1;
        for (uint32_t budget = NET_QUEUE_SIZE; budget > 0 && r == 1; budget--)
            r = receive_one(n);
        pthread_mutex_unlock(&n->dev.lock);
        if (r < 0)
            want_tap = 0; /* frames wait in the TAP until the guest posts buffers */
    }
    return NULL;
}

int virtio_net_init(struct virtio_net *n, const char *tap, const uint8_t mac[6],
                    const struct vm_events *ev, const struct virtq_mem *mem, int vm_fd,
                    uint32_t irq, char *err, size_t errlen)
{
    n->tap_fd = n->wake_fd = -1;
    if (strlen(tap) == 0 || strlen(tap) >= IFNAMSIZ || strchr(tap, '/')) {
        snprintf(err, errlen, "TAP %s: not a valid interface name", tap);
        return -1;
    }
    if (if_nametoindex(tap) == 0) {
        snprintf(err, errlen, "TAP %s does not exist (create it and attach it to a bridge)",
                 tap);
        return -1;
    }
    n->tap_fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (n->tap_fd < 0) {
        snprintf(err, errlen, "/dev/net/tun: %s", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", tap);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    int hdr = NET_HDR;
    if (ioctl(n->tap_fd, TUNSETIFF, &ifr) < 0 || ioctl(n->tap_fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        if (errno == EINVAL) /* the name belongs to an interface of another kind */
            snprintf(err, errlen, "%s is not a TAP interface", tap);
        else
            snprintf(err, errlen, "TAP %s: cannot attach: %s", tap, strerror(errno));
        close(n->tap_fd);
        n->tap_fd = -1;
        return -1;
    }
    n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        close(n->tap_fd);
        n->tap_fd = -1;
        return -1;
    }
    memcpy(n->mac, mac, 6);
    virtio_dev_init(&n->dev, VIRTIO_ID_NET, 2, NET_QUEUE_SIZE,
                    VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS, &net_ops, ev, mem, vm_fd, irq);
    return 0;
}

int virtio_net_start(struct virtio_net *n, char *err, size_t errlen)
{
    int e = pthread_create(&n->rx_thread, NULL, rx_thread, n);
    if (e != 0) {
        snprintf(err, errlen, "cannot start the receive thread: %s", strerror(e));
        return -1;
    }
    n->rx_started = 1;
    return 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
    if (n->rx_started) {
        __atomic_store_n(&n->stop, 1, __ATOMIC_RELEASE);
        wake(n);
        pthread_join(n->rx_thread, NULL);
        n->rx_started = 0;
    }
    if (n->tap_fd >= 0)
        close(n->tap_fd);
    if (n->wake_fd >= 0)
        close(n->wake_fd);
    n->tap_fd = n->wake_fd = -1;
    virtio_dev_destroy(&n->dev);
}
