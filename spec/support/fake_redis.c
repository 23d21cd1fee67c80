/*
 * fake_redis.c - a TCP server that answers like a broken Redis, for the
 * specs of what a client does with malformed replies.
 *
 *   fake_redis PORTFILE REPLY...
 *
 * Listens on 127.0.0.1 on a port of the kernel's choosing, written to
 * PORTFILE once listening. Connections are served one at a time. Each chunk
 * of bytes read from a client (one request) is answered with the next REPLY
 * of the list, in order across connections, where a REPLY is:
 *   text       sent as is, after decoding \r \n \\ and \xHH escapes
 *   SILENT     nothing is sent (the client has to time out)
 *   CLOSE      the connection is closed without a byte
 *   THENCLOSE:text   text is sent, then the connection is closed
 *   DELAY:ms:text    text is sent ms milliseconds later (a late reply)
 * Once the list is used up every request is answered "$-1\r\n" (a nil, as a
 * GET of a missing key). The process exits after 60 s without a connection.
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t unescape(const char *s, char *out)
{
    size_t n = 0;
    while (*s) {
        if (s[0] == '\\' && s[1] == 'r') {
            out[n++] = '\r';
            s += 2;
        } else if (s[0] == '\\' && s[1] == 'n') {
            out[n++] = '\n';
            s += 2;
        } else if (s[0] == '\\' && s[1] == '\\') {
            out[n++] = '\\';
            s += 2;
        } else if (s[0] == '\\' && s[1] == 'x' && s[2] && s[3]) {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 4;
        } else {
            out[n++] = *s++;
        }
    }
    return n;
}

/* Serves one connection; returns the index of the next scripted reply. */
static int serve(int fd, int next, int argc, char **argv)
{
    char buf[65536];
    char *reply = malloc(65536);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        if (next >= argc) {
            if (write(fd, "$-1\r\n", 5) < 0)
                break;
            continue;
        }
        const char *r = argv[next++];
        if (strcmp(r, "SILENT") == 0)
            continue;
        if (strcmp(r, "CLOSE") == 0)
            break;
        if (strncmp(r, "DELAY:", 6) == 0) {
            char *end;
            long ms = strtol(r + 6, &end, 10);
            if (*end == ':') {
                poll(NULL, 0, (int)ms);
                r = end + 1;
            }
        }
        int then_close = strncmp(r, "THENCLOSE:", 10) == 0;
        size_t len = unescape(then_close ? r + 10 : r, reply);
        if (write(fd, reply, len) < 0 || then_close)
            break;
    }
    free(reply);
    close(fd);
    return next;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORTFILE REPLY...\n", argv[0]);
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 16) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("fake_redis");
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return 1;
    fprintf(f, "%d\n", ntohs(sa.sin_port));
    fclose(f);
    rename(tmp, argv[1]); /* appears complete or not at all */
    int next = 2;
    for (;;) {
        struct pollfd p = {ls, POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0)
            return 0;
        int fd = accept(ls, NULL, NULL);
        if (fd >= 0)
            next = serve(fd, next, argc, argv);
    }
}
