/*
 * delay_proxy.c - a TCP proxy that holds every reply for a fixed delay, for
 * bench/openresty.sh: a server on the other side of a network with that
 * much latency.
 *
 *   delay_proxy PORTFILE TARGET_PORT DELAY_MS
 *
 * Listens on 127.0.0.1 (a port of the kernel's choosing, written to
 * PORTFILE) and forwards each connection to 127.0.0.1:TARGET_PORT. Bytes
 * from the client go through at once; bytes from the server are sent to the
 * client DELAY_MS milliseconds after they arrived (each chunk on its own
 * clock, so pipelined replies keep their spacing). Two threads per
 * connection. Exits after 120 s without a new connection.
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int target_port, delay_ms;

typedef struct pipe_pair {
    int from, to;
    int delayed;
} pipe_pair;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *pump(void *arg)
{
    pipe_pair p = *(pipe_pair *)arg;
    free(arg);
    char buf[65536];
    for (;;) {
        ssize_t n = read(p.from, buf, sizeof buf);
        if (n <= 0)
            break;
        if (p.delayed) {
            double until = now() + delay_ms / 1000.0;
            double left;
            while ((left = until - now()) > 0)
                usleep((useconds_t)(left * 1e6));
        }
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(p.to, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    shutdown(p.to, SHUT_WR);
    shutdown(p.from, SHUT_RD);
    return NULL;
}

typedef struct conn {
    int client, server;
} conn;

static void *serve(void *arg)
{
    conn c = *(conn *)arg;
    free(arg);
    pthread_t up, down;
    pipe_pair *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    *a = (pipe_pair){c.client, c.server, 0};
    *b = (pipe_pair){c.server, c.client, 1};
    pthread_create(&up, NULL, pump, a);
    pthread_create(&down, NULL, pump, b);
    pthread_join(up, NULL);
    pthread_join(down, NULL);
    close(c.client);
    close(c.server);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORTFILE TARGET_PORT DELAY_MS\n", argv[0]);
        return 2;
    }
    target_port = atoi(argv[2]);
    delay_ms = atoi(argv[3]);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 512) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("delay_proxy");
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return 1;
    fprintf(f, "%d\n", ntohs(sa.sin_port));
    fclose(f);
    rename(tmp, argv[1]);
    for (;;) {
        struct pollfd p = {ls, POLLIN, 0};
        if (poll(&p, 1, 120000) <= 0)
            return 0;
        int cfd = accept(ls, NULL, NULL);
        if (cfd < 0)
            continue;
        int sfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in t;
        memset(&t, 0, sizeof t);
        t.sin_family = AF_INET;
        t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t.sin_port = htons((unsigned short)target_port);
        if (connect(sfd, (struct sockaddr *)&t, sizeof t) < 0) {
            close(cfd);
            close(sfd);
            continue;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = malloc(sizeof *c);
        c->client = cfd;
        c->server = sfd;
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&th, &at, serve, c) != 0) {
            close(cfd);
            close(sfd);
            free(c);
        }
        pthread_attr_destroy(&at);
    }
}
