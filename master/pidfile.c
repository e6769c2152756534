/* The pid file, locked with flock(2) for the master's life, and telling a
 * live llmroute process from a pid the kernel has handed to another. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

int llmr_pid_file_lock(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644), n;

    if (fd == -1) {
        llmr_error("pid file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        int e = errno;
        ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[r > 0 ? r : 0] = '\0';
        if (e == EWOULDBLOCK)
            llmr_error("pid file %s is locked by another llmroute (pid %d): stop it first, "
                       "or give this one another server.pid_file", path, atoi(buf));
        else
            llmr_error("pid file %s: flock: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
        llmr_error("pid file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int exe_of(int pid, char *buf, size_t cap)
{
    char link[64];
    ssize_t n;
    char *del;

    snprintf(link, sizeof(link), "/proc/%d/exe", pid);
    n = readlink(link, buf, cap - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* A binary rebuilt since the process started reads "path (deleted)". */
    del = strstr(buf, " (deleted)");
    if (del != NULL && del[10] == '\0')
        *del = '\0';
    return 0;
}

/* A zombie has finished: whoever reaps it, it holds nothing any more. */
static int is_zombie(int pid)
{
    char path[64], buf[512], *close_paren;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    return close_paren != NULL && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/* The binary's name, not its path: an upgrade may start the new master
 * from another directory than the one whose workers it finds. */
int llmr_pid_is_ours(int pid)
{
    char mine[4096], theirs[4096];
    const char *a, *b;

    if (pid <= 0 || (kill(pid, 0) == -1 && errno != EPERM) || is_zombie(pid))
        return 0;
    if (exe_of((int)getpid(), mine, sizeof(mine)) < 0
        || exe_of(pid, theirs, sizeof(theirs)) < 0)
        return 1;       /* cannot tell (no /proc, or not ours to read): assume it is */
    a = strrchr(mine, '/');
    b = strrchr(theirs, '/');
    return strcmp(a != NULL ? a + 1 : mine, b != NULL ? b + 1 : theirs) == 0;
}
