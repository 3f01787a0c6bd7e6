/*
 * rtc.c - MC146818 CMOS real-time clock at ports 0x70/0x71: the host's UTC
 * time (BCD or binary as status B asks), never "update in progress", plus the
 * 128 bytes of CMOS RAM.  Without it Linux polls unassigned ports for seconds
 * waiting for an update that never ends.  No alarm or periodic interrupts.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "vmm_internal.h"

enum {
    RTC_SECONDS = 0x00, RTC_MINUTES = 0x02, RTC_HOURS = 0x04, RTC_WEEKDAY = 0x06,
    RTC_DAY = 0x07, RTC_MONTH = 0x08, RTC_YEAR = 0x09,
    RTC_STATUS_A = 0x0a, RTC_STATUS_B = 0x0b, RTC_STATUS_C = 0x0c, RTC_STATUS_D = 0x0d,
    RTC_CENTURY = 0x32,
};
#define STATUS_B_BINARY 0x04
#define STATUS_B_24H 0x02

static uint8_t encode(const struct rtc *r, int v)
{
    if (r->cmos[RTC_STATUS_B] & STATUS_B_BINARY)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t read_locked(struct rtc *r, uint8_t index)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    switch (index) {
    case RTC_SECONDS: return encode(r, tm.tm_sec);
    case RTC_MINUTES: return encode(r, tm.tm_min);
    case RTC_HOURS: return encode(r, tm.tm_hour);
    case RTC_WEEKDAY: return encode(r, tm.tm_wday + 1);
    case RTC_DAY: return encode(r, tm.tm_mday);
    case RTC_MONTH: return encode(r, tm.tm_mon + 1);
    case RTC_YEAR: return encode(r, tm.tm_year % 100);
    case RTC_CENTURY: return encode(r, (tm.tm_year + 1900) / 100);
    case RTC_STATUS_A: return r->cmos[RTC_STATUS_A] & 0x7f; /* UIP never set */
    case RTC_STATUS_C: return 0;                             /* no interrupt flags */
    case RTC_STATUS_D: return 0x80;                          /* power good, time valid */
    default: return r->cmos[index];
    }
}

static void rtc_io(void *opaque, uint32_t cpu, uint64_t offset, uint8_t *data,
                   uint32_t size, int is_write)
{
    struct rtc *r = opaque;
    (void)cpu;
    pthread_mutex_lock(&r->lock);
    if (offset == 0) {
        if (is_write)
            r->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
        else
            memset(data, 0xff, size);
    } else {
        if (is_write) {
            if (r->index == RTC_STATUS_B)
                r->cmos[RTC_STATUS_B] = (uint8_t)(data[0] | STATUS_B_24H);
            else if (r->index > RTC_STATUS_D && r->index != RTC_CENTURY)
                r->cmos[r->index] = data[0]; /* time setting is ignored */
            else if (r->index == RTC_STATUS_A)
                r->cmos[RTC_STATUS_A] = data[0] & 0x7f;
        } else {
            memset(data, 0, size);
            data[0] = read_locked(r, r->index);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct rtc *r, struct bus *pio, uint16_t base)
{
    memset(r, 0, sizeof(*r));
    if (pthread_mutex_init(&r->lock, NULL) != 0)
        return -ENOMEM;
    r->cmos[RTC_STATUS_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
    r->cmos[RTC_STATUS_B] = STATUS_B_24H;
    return bus_register(pio, base, 2, rtc_io, r);
}

void rtc_destroy(struct rtc *r)
{
    pthread_mutex_destroy(&r->lock);
}
