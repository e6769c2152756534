/* Listening sockets, bound by the master and inherited by every worker. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "master.h"

/* "host:port" or "[v6]:port" into host and port strings. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon, *h = addr;
    size_t hlen;

    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        h = addr + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - addr);
    }
    if (hlen >= hcap || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

int llmr_listen_open(const char *addr)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    int fd = -1, one = 1, rc;

    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        llmr_error("listen %s: not host:port", addr);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        llmr_error("listen %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        goto failed;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        goto failed;
    /* Accepted sockets inherit TCP_NODELAY: stream chunks and small replies
     * must not wait for Nagle. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
        goto failed;
    if (res->ai_family == AF_INET6
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto failed;
    if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 4096) == -1)
        goto failed;
    freeaddrinfo(res);
    return fd;

failed:
    llmr_error("listen %s: %s", addr, strerror(errno));
    if (fd != -1)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static int find_listener(const llmr_listener *l, int n, const char *addr)
{
    for (int i = 0; i < n; i++)
        if (strcmp(l[i].addr, addr) == 0)
            return i;
    return -1;
}

int llmr_listeners_reconcile(const llmr_conf *conf, const llmr_listener *from, int nfrom,
                             llmr_listener *to, int *nto)
{
    int n = 0;

    if (conf->nlisten > LLMR_MAX_LISTEN) {
        llmr_error("%s: at most %d listen addresses", conf->file, LLMR_MAX_LISTEN);
        return -1;
    }
    for (int i = 0; i < conf->nlisten; i++) {
        int k = find_listener(from, nfrom, conf->listen[i]);
        snprintf(to[n].addr, sizeof(to[n].addr), "%s", conf->listen[i]);
        to[n].fd = k >= 0 ? from[k].fd : llmr_listen_open(conf->listen[i]);
        if (to[n].fd < 0) {
            /* Undo: close only the sockets this call opened. */
            for (int j = 0; j < n; j++)
                if (find_listener(from, nfrom, to[j].addr) < 0)
                    close(to[j].fd);
            return -1;
        }
        n++;
    }
    *nto = n;
    return 0;
}

void llmr_listeners_close_unused(const llmr_listener *old, int nold,
                                 const llmr_listener *cur, int ncur)
{
    for (int i = 0; i < nold; i++)
        if (find_listener(cur, ncur, old[i].addr) < 0)
            close(old[i].fd);
}
