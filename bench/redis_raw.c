/*
 * redis_raw.c - the "raw C socket loop" baseline of bench/run.sh: Redis
 * GET / SET in RESP over one TCP connection, one request per round trip,
 * no library, no parsing beyond finding the end of the reply.
 *
 *   redis_raw PORT get|set N   ->  prints requests per second
 *
 * Keys "raw:%06d" over 1000 keys with 5-byte values (the size of the
 * external form RedisCache stores for a 3-character string, "!" plus its
 * codec bytes), so both sides move the same bytes.
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

static char rbuf[1 << 16];

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

/* Reads one reply: a line ("+OK", "-ERR ...", ":1", "$-1") or a bulk
 * string ("$N" line, then N bytes and CRLF). */
static void read_reply(int fd)
{
    size_t len = 0, need = 0;
    for (;;) {
        ssize_t r = read(fd, rbuf + len, sizeof rbuf - len);
        if (r <= 0) {
            perror("read");
            exit(1);
        }
        len += (size_t)r;
        if (!need) {
            char *eol = memchr(rbuf, '\n', len);
            if (!eol)
                continue;
            size_t line = (size_t)(eol - rbuf) + 1;
            if (rbuf[0] != '$' || rbuf[1] == '-') {
                need = line;
            } else {
                need = line + (size_t)atol(rbuf + 1) + 2;
                if (need > sizeof rbuf) {
                    fprintf(stderr, "reply too long\n");
                    exit(1);
                }
            }
        }
        if (len >= need)
            return;
    }
}

static int command(char *out, size_t cap, const char *op, long key)
{
    char k[32];
    int kl = snprintf(k, sizeof k, "raw:%06ld", key);
    if (strcmp(op, "get") == 0)
        return snprintf(out, cap, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, k);
    return snprintf(out, cap, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$5\r\n!\xa3xxx\r\n", kl, k);
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[2], "get") != 0 && strcmp(argv[2], "set") != 0)) {
        fprintf(stderr, "usage: %s PORT get|set N\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
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
    char cmd[256];
    for (long i = 0; i < KEYS; i++) { /* the data set, untimed */
        int len = command(cmd, sizeof cmd, "set", i);
        send_all(fd, cmd, (size_t)len);
        read_reply(fd);
    }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        int len = command(cmd, sizeof cmd, argv[2], i % KEYS);
        send_all(fd, cmd, (size_t)len);
        read_reply(fd);
    }
    printf("%.0f\n", (double)n / (now() - t0));
    close(fd);
    return 0;
}
