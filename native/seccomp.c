/*
 * seccomp.c - optional system-call filter for the vCPU threads
 * (vmm_config.seccomp): once a vCPU thread runs guest code it may only make
 * the calls the exit handlers need; anything else kills the process, so a
 * device bug a guest manages to exploit cannot open files, exec, or connect.
 *
 * Per thread (no TSYNC): the caller's other threads are not affected.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm_internal.h"

static const int allowed[] = {
    SYS_ioctl,        /* KVM_RUN, KVM_IRQ_LINE, KVM_SIGNAL_MSI */
    SYS_read,         SYS_write,     SYS_readv,      SYS_writev,  /* console, TAP, eventfd */
    SYS_pread64,      SYS_pwrite64,  SYS_preadv,     SYS_pwritev, /* virtio-blk */
    SYS_fdatasync,    SYS_fsync,                                  /* virtio-blk flush */
    SYS_futex,                                                    /* device locks */
    SYS_tgkill,       SYS_getpid,    SYS_gettid,                  /* kicking the others */
    SYS_rt_sigreturn, SYS_rt_sigprocmask,                         /* the kick signal */
    SYS_clock_gettime, SYS_clock_nanosleep, SYS_sched_yield,
    SYS_madvise,      SYS_munmap,    SYS_mmap,       SYS_brk,     /* allocator, thread exit */
    SYS_exit,         SYS_exit_group, SYS_restart_syscall,
    SYS_sigaltstack,                            /* sanitizers unset theirs at thread exit */
};

int vcpu_seccomp(void)
{
    enum { N = sizeof(allowed) / sizeof(allowed[0]) };
    struct sock_filter f[4 + 2 * N + 1];
    size_t k = 0;
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                          offsetof(struct seccomp_data, arch));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                          offsetof(struct seccomp_data, nr));
    for (size_t i = 0; i < N; i++) {
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)allowed[i],
                                              0, 1);
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    struct sock_fprog prog = {.len = (unsigned short)k, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    return 0;
}
