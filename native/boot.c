/*
 * boot.c - the Linux x86 boot protocol (Documentation/arch/x86/boot.rst):
 * read the bzImage setup header, load the protected-mode kernel at 1 MiB,
 * write the zero page (struct boot_params) with the e820 map, the command
 * line and the initramfs placed as high as initrd_addr_max allows.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm_internal.h"

/* offsets in the bzImage file and in struct boot_params (the same page) */
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_VID_MODE 0x1fa
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_CODE32_START 0x214
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128
#define BP_HEADER_MIN_END 0x268 /* through init_size (protocol 2.10) */

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }

#define MIB(x) ((unsigned long long)((x) >> 20))

/* The zero page every guest gets: zeroed, with the e820 map filled in. */
int boot_write_zero_page_base(struct vmm *vm)
{
    uint8_t *zp = gpa_to_hva(vm, VMM_ZERO_PAGE_ADDR, 0x1000);
    if (zp == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "zero page outside guest RAM");
    memset(zp, 0, 0x1000);
    struct vmm_e820_entry e[VMM_MAX_E820];
    int n = vmm_build_e820(vm, e, VMM_MAX_E820);
    if (n > VMM_MAX_E820 || n > BP_E820_MAX)
        return vmm_fail(vm, VMM_E_INVAL, "e820 map has too many entries");
    zp[BP_E820_ENTRIES] = (uint8_t)n;
    for (int i = 0; i < n; i++) {
        uint8_t *d = zp + BP_E820_TABLE + 20 * i;
        memcpy(d, &e[i].addr, 8);
        memcpy(d + 8, &e[i].size, 8);
        memcpy(d + 16, &e[i].type, 4);
    }
    return 0;
}

#define HEADER_BUF 1024 /* the setup header ends before 0x202 + 0xff */

/* A kernel or initramfs: bytes in memory, or a file read straight into guest RAM. */
struct image {
    const char *what;
    const uint8_t *buf; /* NULL: read from fd */
    int fd;
    size_t len;
};

static int image_read(struct vmm *vm, const struct image *im, uint64_t off, void *dst,
                      size_t n)
{
    if (off > im->len || n > im->len - off)
        return vmm_fail(vm, VMM_E_INVAL, "%s: read past its end", im->what);
    if (im->buf) {
        memcpy(dst, im->buf + off, n);
        return 0;
    }
    uint8_t *p = dst;
    while (n) {
        ssize_t got = pread(im->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return vmm_fail(vm, VMM_E_IO, "cannot read the %s: %s", im->what,
                            got < 0 ? strerror(errno) : "file shrank while loading");
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return 0;
}

static int parse_header(struct vmm *vm, const uint8_t *k, size_t len,
                        struct vmm_boot_info *bi)
{
    if (len < BP_HEADER_MIN_END)
        return vmm_fail(vm, VMM_E_NOT_BZIMAGE,
                        "not a bzImage: %zu bytes is too short for a setup header", len);
    if (rd16(k + BP_BOOT_FLAG) != 0xaa55 || memcmp(k + BP_HEADER, "HdrS", 4) != 0)
        return vmm_fail(vm, VMM_E_NOT_BZIMAGE,
                        "not a bzImage: no Linux setup header (boot flag 0x%04x, header "
                        "magic 0x%08x; expected 0xaa55 and \"HdrS\")",
                        rd16(k + BP_BOOT_FLAG), rd32(k + BP_HEADER));
    bi->protocol = rd16(k + BP_VERSION);
    if (bi->protocol < 0x020a)
        return vmm_fail(vm, VMM_E_NOT_BZIMAGE,
                        "boot protocol %u.%02u is too old (2.10 or newer needed)",
                        bi->protocol >> 8, bi->protocol & 0xff);
    bi->loadflags = k[BP_LOADFLAGS];
    if (!(bi->loadflags & LOADED_HIGH))
        return vmm_fail(vm, VMM_E_NOT_BZIMAGE,
                        "not a bzImage: a zImage (kernel loaded low) is not supported");
    bi->setup_sects = k[BP_SETUP_SECTS] ? k[BP_SETUP_SECTS] : 4;
    bi->xloadflags = bi->protocol >= 0x020c ? rd16(k + BP_XLOADFLAGS) : 0;
    bi->initrd_addr_max = rd32(k + BP_INITRD_ADDR_MAX);
    bi->kernel_alignment = rd32(k + BP_KERNEL_ALIGNMENT);
    bi->cmdline_size = rd32(k + BP_CMDLINE_SIZE);
    bi->pref_address = rd64(k + BP_PREF_ADDRESS);
    bi->init_size = rd32(k + BP_INIT_SIZE);
    size_t setup_len = ((size_t)bi->setup_sects + 1) * 512;
    if (setup_len >= len)
        return vmm_fail(vm, VMM_E_NOT_BZIMAGE,
                        "not a bzImage: %zu bytes of setup code but the file has %zu",
                        setup_len, len);
    bi->kernel_size = len - setup_len;
    return 0;
}

static int load_linux(struct vmm *vm, const struct image *kernel, const struct image *initrd,
                      const char *cmdline, int prefer_64, struct vmm_boot_info *info)
{
    struct vmm_boot_info bi;
    uint8_t hdr[HEADER_BUF];
    size_t hdr_len = kernel->len < sizeof(hdr) ? kernel->len : sizeof(hdr);
    size_t initrd_len = initrd ? initrd->len : 0;
    int r;

    memset(&bi, 0, sizeof(bi));
    if (vm->has_run)
        return vmm_fail(vm, VMM_E_STATE, "the VM has already run");
    if ((r = image_read(vm, kernel, 0, hdr, hdr_len)) < 0)
        return r;
    if ((r = parse_header(vm, hdr, kernel->len, &bi)) < 0)
        return r;

    /* the kernel needs init_size bytes from its load address to decompress */
    bi.kernel_addr = VMM_KERNEL_ADDR;
    uint64_t need = bi.init_size > bi.kernel_size ? bi.init_size : bi.kernel_size;
    uint64_t kernel_end = bi.kernel_addr + need;
    if (kernel_end > vm->low_bytes)
        return vmm_fail(vm, VMM_E_TOO_BIG,
                        "kernel needs %llu MiB from 1 MiB (init_size) but the guest has "
                        "%llu MiB of RAM",
                        MIB(need + 0xfffff), MIB(vm->mem_bytes));
    size_t setup_len = ((size_t)bi.setup_sects + 1) * 512;
    void *dst = gpa_to_hva(vm, bi.kernel_addr, bi.kernel_size);
    if (dst == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "kernel outside guest RAM");
    if ((r = image_read(vm, kernel, setup_len, dst, bi.kernel_size)) < 0)
        return r;

    /* command line */
    size_t cmd_len = cmdline ? strlen(cmdline) : 0;
    uint64_t cmd_max = bi.cmdline_size < VMM_CMDLINE_MAX - 1 ? bi.cmdline_size
                                                              : VMM_CMDLINE_MAX - 1;
    if (cmd_len > cmd_max)
        return vmm_fail(vm, VMM_E_TOO_BIG,
                        "command line of %zu bytes is longer than the kernel accepts (%llu)",
                        cmd_len, (unsigned long long)cmd_max);
    char *cmd = gpa_to_hva(vm, VMM_CMDLINE_ADDR, cmd_len + 1);
    if (cmd == NULL)
        return vmm_fail(vm, VMM_E_RANGE, "command line outside guest RAM");
    if (cmd_len)
        memcpy(cmd, cmdline, cmd_len);
    cmd[cmd_len] = '\0';
    bi.cmdline_addr = VMM_CMDLINE_ADDR;

    /* initramfs: page-aligned, as high as allowed, above the kernel */
    if (initrd_len) {
        uint64_t top = vm->low_bytes;
        if ((uint64_t)bi.initrd_addr_max + 1 < top)
            top = (uint64_t)bi.initrd_addr_max + 1;
        if (initrd_len > top || ((top - initrd_len) & ~0xfffULL) < kernel_end)
            return vmm_fail(vm, VMM_E_TOO_BIG,
                            "initramfs of %llu MiB does not fit in %llu MiB of guest RAM "
                            "(below %llu MiB, above the kernel's %llu MiB)",
                            MIB(initrd_len + 0xfffff), MIB(vm->mem_bytes), MIB(top),
                            MIB(kernel_end + 0xfffff));
        bi.initrd_addr = (top - initrd_len) & ~0xfffULL;
        bi.initrd_size = initrd_len;
        void *id = gpa_to_hva(vm, bi.initrd_addr, initrd_len);
        if (id == NULL)
            return vmm_fail(vm, VMM_E_RANGE, "initramfs outside guest RAM");
        if ((r = image_read(vm, initrd, 0, id, initrd_len)) < 0)
            return r;
    }

    /* zero page: e820, then the setup header as the kernel gave it, updated */
    if ((r = boot_write_zero_page_base(vm)) < 0)
        return r;
    uint8_t *zp = gpa_to_hva(vm, VMM_ZERO_PAGE_ADDR, 0x1000);
    size_t hdr_end = BP_HEADER + hdr[BP_JUMP + 1]; /* jump offset ends the header */
    if (hdr_end > hdr_len || hdr_end < BP_HEADER_MIN_END)
        hdr_end = BP_HEADER_MIN_END;
    memcpy(zp + BP_SETUP_SECTS, hdr + BP_SETUP_SECTS, hdr_end - BP_SETUP_SECTS);
    wr16(zp + BP_VID_MODE, 0xffff); /* "normal" */
    zp[BP_TYPE_OF_LOADER] = 0xff;   /* undefined boot loader */
    zp[BP_LOADFLAGS] = (uint8_t)(bi.loadflags | CAN_USE_HEAP);
    wr16(zp + BP_HEAP_END_PTR, 0xfe00);
    wr32(zp + BP_CODE32_START, (uint32_t)bi.kernel_addr);
    wr32(zp + BP_CMD_LINE_PTR, (uint32_t)bi.cmdline_addr);
    wr32(zp + BP_RAMDISK_IMAGE, (uint32_t)bi.initrd_addr);
    wr32(zp + BP_RAMDISK_SIZE, (uint32_t)bi.initrd_size);
    bi.zero_page = VMM_ZERO_PAGE_ADDR;
    bi.e820_count = zp[BP_E820_ENTRIES];
    vmm_get_e820(vm, bi.e820, VMM_MAX_E820);

    if (prefer_64 && (bi.xloadflags & XLF_KERNEL_64)) {
        bi.entry_mode = VMM_ENTRY_LONG64;
        bi.entry = bi.kernel_addr + 0x200;
    } else {
        bi.entry_mode = VMM_ENTRY_PROT32;
        bi.entry = bi.kernel_addr;
    }
    if ((r = vmm_set_entry(vm, bi.entry_mode, bi.entry, bi.zero_page)) < 0)
        return r;
    if (info)
        *info = bi;
    return 0;
}

int vmm_load_linux(vmm_t *vm, const uint8_t *kernel, size_t kernel_len,
                   const uint8_t *initrd, size_t initrd_len, const char *cmdline,
                   int prefer_64, struct vmm_boot_info *info)
{
    if (kernel == NULL || (initrd == NULL && initrd_len))
        return vmm_fail(vm, VMM_E_INVAL, "no kernel image given");
    struct image k = {"kernel", kernel, -1, kernel_len};
    struct image i = {"initramfs", initrd, -1, initrd_len};
    return load_linux(vm, &k, initrd_len ? &i : NULL, cmdline, prefer_64, info);
}

static int file_image(struct vmm *vm, struct image *im, const char *what, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vmm_fail(vm, VMM_E_IO, "cannot read the %s: %s", what, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return vmm_fail(vm, VMM_E_INVAL, "the %s is not a regular file", what);
    *im = (struct image){what, NULL, fd, (size_t)st.st_size};
    return 0;
}

int vmm_load_linux_fd(vmm_t *vm, int kernel_fd, int initrd_fd, const char *cmdline,
                      int prefer_64, struct vmm_boot_info *info)
{
    struct image k, i;
    int r;
    if ((r = file_image(vm, &k, "kernel", kernel_fd)) < 0)
        return r;
    if (initrd_fd >= 0 && (r = file_image(vm, &i, "initramfs", initrd_fd)) < 0)
        return r;
    return load_linux(vm, &k, initrd_fd >= 0 && i.len ? &i : NULL, cmdline, prefer_64, info);
}
