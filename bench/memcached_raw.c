/*
 * memcached_raw.c - the baseline for bench/memcached.sh: memcached's text
 * protocol spoken over one TCP socket, one request at a time, no library.
 *
 *   memcached_raw PORT get|set|mget N   ->  prints operations (keys for
 *                                           mget) per second
 * Keys are "raw:%06d" over 1000 keys with 3-byte values (as bench/memcached.lua);
 * mget asks for 100 keys per request.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEYS 1000
#define BATCH 100

static char rbuf[1 << 16];
static size_t rlen;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror("write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Reads until the buffer ends with term; the reply is then dropped. */
static void read_until(int fd, const char *term)
{
    size_t tl = strlen(term);
    rlen = 0;
    for (;;) {
        ssize_t r = read(fd, rbuf + rlen, sizeof rbuf - rlen);
        if (r <= 0) {
            perror("read");
            exit(1);
        }
        rlen += (size_t)r;
        if (rlen >= tl && memcmp(rbuf + rlen - tl, term, tl) == 0)
            return;
        if (rlen == sizeof rbuf) {
            fprintf(stderr, "reply too long\n");
            exit(1);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT get|set|mget N\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *op = argv[2];
    long n = atol(argv[3]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char cmd[4096];
    for (int i = 0; i < KEYS; i++) { /* the data set, untimed */
        int len = snprintf(cmd, sizeof cmd, "set raw:%06d 0 0 3\r\nxxx\r\n", i);
        send_all(fd, cmd, (size_t)len);
        read_until(fd, "\r\n");
    }
    double t0 = now();
    long units = 0;
    for (long i = 0; i < n; i++) {
        int len;
        if (strcmp(op, "get") == 0) {
            len = snprintf(cmd, sizeof cmd, "get raw:%06ld\r\n", i % KEYS);
            send_all(fd, cmd, (size_t)len);
            read_until(fd, "END\r\n");
            units++;
        } else if (strcmp(op, "set") == 0) {
            len = snprintf(cmd, sizeof cmd, "set raw:%06ld 0 0 3\r\nxxx\r\n", i % KEYS);
            send_all(fd, cmd, (size_t)len);
            read_until(fd, "\r\n");
            units++;
        } else {
            len = snprintf(cmd, sizeof cmd, "get");
            for (int k = 0; k < BATCH; k++)
                len += snprintf(cmd + len, sizeof cmd - (size_t)len, " raw:%06d", k);
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, "\r\n");
            send_all(fd, cmd, (size_t)len);
            read_until(fd, "END\r\n");
            units += BATCH;
        }
    }
    printf("%.0f\n", (double)units / (now() - t0));
    close(fd);
    return 0;
}
