/*
 * faas-spawn: drop to an unprivileged uid with rlimits set, then exec.
 *
 *   faas-spawn UID GID RESOURCE=VALUE... -- PROGRAM ARGS...
 *
 * RESOURCE is a number from <sys/resource.h> (RLIMIT_*); soft and hard are
 * both set to VALUE. Supplementary groups are cleared. Any failure exits 125
 * with a message on stderr, before PROGRAM runs.
 *
 * Why a helper: the gateway is a large Python process. Asking Python's
 * subprocess to switch uid forces fork() instead of vfork(), and setting
 * rlimits with prlimit(1) costs a second exec; this does both in one small
 * exec, so the namespace sandbox starts close to bare bubblewrap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "faas-spawn: %s: %s\n", what, strerror(errno));
    _exit(125);
}

static unsigned long long number(const char *s, const char *what) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "faas-spawn: bad %s: %s\n", what, s);
        _exit(125);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: faas-spawn UID GID [RES=VALUE...] -- PROGRAM [ARGS...]\n");
        return 125;
    }
    uid_t uid = (uid_t)number(argv[1], "uid");
    gid_t gid = (gid_t)number(argv[2], "gid");
    int i = 3;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "faas-spawn: bad limit: %s\n", argv[i]);
            return 125;
        }
        *eq = '\0';
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)number(eq + 1, "limit value");
        if (setrlimit((int)number(argv[i], "resource"), &rl) != 0)
            die("setrlimit");
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "faas-spawn: no program after --\n");
        return 125;
    }
    if (setgroups(0, NULL) != 0) die("setgroups");
    if (setresgid(gid, gid, gid) != 0) die("setresgid");
    if (setresuid(uid, uid, uid) != 0) die("setresuid");
    execvp(argv[i + 1], &argv[i + 1]);
    die("execvp");
    return 125;
}
