/* Asks the kernel for what a RUN step's sandbox refuses, and prints one line per
 * attempt: its name, then "ok" or the errno's name. Built static (gcc -static) by the
 * tests, so it runs in a busybox rootfs. Every call is harmless where it succeeds:
 * bad magic, null pointers, missing files; nothing that would change the host if the
 * sandbox were broken (no kexec_load, no valid reboot). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long rc) {
    if (rc < 0)
        printf("%s %s\n", name, strerrorname_np(errno));
    else
        printf("%s ok\n", name);
    fflush(stdout);
}

/* A raw clone with `flags`: the child exits at once. */
static long try_clone(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, 0, 0);
    return pid;
}

int main(void) {
    report("unshare-user", unshare(CLONE_NEWUSER));
    report("unshare-mount", unshare(CLONE_NEWNS));
    report("clone-newuser", try_clone(CLONE_NEWUSER));
    report("clone-plain", try_clone(0));
    report("clone3", syscall(SYS_clone3, 0, 0));
    report("mount-tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, 0));
    report("umount2", umount2("/proc", MNT_DETACH));
    report("pivot_root", syscall(SYS_pivot_root, ".", "."));
    report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0));
    report("add_key", syscall(SYS_add_key, "user", "rbuild", "x", 1, -3));
    report("request_key", syscall(SYS_request_key, "user", "rbuild", 0, 0));
    report("bpf", syscall(SYS_bpf, 5 /* PROG_LOAD */, 0, 0));
    report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    report("reboot", syscall(SYS_reboot, 0, 0, 0, 0)); /* bad magic: EINVAL if let through */
    report("init_module", syscall(SYS_init_module, 0, 0, ""));
    report("finit_module", syscall(SYS_finit_module, -1, "", 0));
    report("delete_module", syscall(SYS_delete_module, "rbuild_nonexistent", 0));
    report("swapon", syscall(SYS_swapon, "/nonexistent", 0));
    report("personality-no-aslr", syscall(SYS_personality, 0x0040000));
    report("personality-query", syscall(SYS_personality, 0xffffffff));
    report("socket-vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    report("socket-alg", socket(AF_ALG, SOCK_SEQPACKET, 0));
    report("socket-unix", socket(AF_UNIX, SOCK_STREAM, 0));
    report("ptrace-bad-request", syscall(SYS_ptrace, 0xdead, 0, 0, 0)); /* ESRCH if allowed */
    report("chroot", chroot("."));
    return 0;
}
