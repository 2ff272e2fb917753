/*
 * seccomp_probe: make one system call the sandbox's seccomp filter has a verdict on,
 * optionally under that filter, and print what the kernel answered.
 *
 *   seccomp_probe [-f FILTER_FILE] clone FLAGS   clone(FLAGS | SIGCHLD): "ok" or "errno N"
 *   seccomp_probe [-f FILTER_FILE] clone3        clone3 (a plain fork): "ok" or "errno N"
 *   seccomp_probe [-f FILTER_FILE] x32           getpid through the x32 ABI
 *   seccomp_probe [-f FILTER_FILE] int80         getpid through int 0x80 (the i386 ABI)
 *
 * FILTER_FILE holds the classic-BPF program (faas.executors.seccomp.build_filter()); it is
 * installed with no_new_privs right before the call. Run by root without -f, the same
 * calls show what the kernel answers without the filter (clone with a CLONE_NEW* flag
 * succeeds), so a test can tell the filter's EPERM from a missing capability's.
 * A call the filter kills never prints: the process dies of SIGSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void load_filter(const char *path) {
    static unsigned char buf[65536];
    FILE *f = fopen(path, "rb");
    if (!f) { perror("open filter"); exit(125); }
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct sock_fprog prog = { .len = (unsigned short)(n / sizeof(struct sock_filter)),
                               .filter = (struct sock_filter *)buf };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("no_new_privs"); exit(125); }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) { perror("seccomp"); exit(125); }
}

static int report(long rc) {
    if (rc == 0) _exit(0);           /* the new child */
    if (rc < 0) { printf("errno %d\n", errno); return 0; }
    waitpid((pid_t)rc, NULL, __WALL);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv) {
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "-f") == 0) {
        load_filter(argv[2]);
        i = 3;
    }
    if (i >= argc) { fprintf(stderr, "usage: seccomp_probe [-f FILE] CALL [ARG]\n"); return 125; }
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *call = argv[i];
    if (strcmp(call, "clone") == 0 && i + 1 < argc) {
        unsigned long flags = strtoul(argv[i + 1], NULL, 0);
        return report(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0));
    }
    if (strcmp(call, "clone3") == 0) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.exit_signal = SIGCHLD;
        return report(syscall(435, &args, sizeof args));
    }
    if (strcmp(call, "x32") == 0) {
        long rc;
        long nr = 39 | 0x40000000L; /* __X32_SYSCALL_BIT | getpid */
        __asm__ volatile ("syscall" : "=a"(rc) : "a"(nr) : "rcx", "r11", "memory");
        printf("returned %ld\n", rc);
        return 0;
    }
    if (strcmp(call, "int80") == 0) {
        long rc;
        __asm__ volatile ("int $0x80" : "=a"(rc) : "a"(20L) : "memory"); /* i386 getpid */
        printf("returned %ld\n", rc);
        return 0;
    }
    fprintf(stderr, "unknown call %s\n", call);
    return 125;
}
