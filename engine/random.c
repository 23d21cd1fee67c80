/*
 * random.c - random bytes for seeds, tags and versions.
 *
 * The kernel's bytes first (getrandom without blocking, then
 * /dev/urandom, which never blocks either): a cache must not wait for
 * entropy at boot. Should both fail (a sandbox without the syscall or
 * /dev), the bytes come from the clock, the pid, an address and a
 * process-wide atomic counter run through a mixer: not secret, but
 * distinct between calls, threads and processes, which is what every
 * caller needs at the least.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "co.h"

static size_t from_kernel(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, GRND_NONBLOCK);
        if (r > 0)
            got += (size_t)r;
        else if (!(r < 0 && errno == EINTR))
            break;
    }
    if (got == n)
        return n;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return got;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r > 0)
            got += (size_t)r;
        else if (!(r < 0 && errno == EINTR))
            break;
    }
    close(fd);
    return got;
}

/* splitmix64's finalizer: every input bit moves every output bit. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void cache_random_bytes(void *out, size_t n)
{
    /* on the cosocket path every run of an operation draws the same */
    if (cache_co_random(out, n) == 1)
        return;
    cache_random_fresh(out, n);
}

void cache_random_fresh(void *out, size_t n)
{
    static atomic_uint_fast64_t counter;
    unsigned char *buf = out;
    size_t got = from_kernel(buf, n);
    while (got < n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t c = (uint64_t)atomic_fetch_add(&counter, 1) + 1;
        uint64_t v = mix64((uint64_t)ts.tv_sec * 1000000007ULL ^
                           (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 40 ^
                           (uint64_t)(uintptr_t)&ts ^
                           c * 0x9e3779b97f4a7c15ULL);
        size_t k = n - got < sizeof v ? n - got : sizeof v;
        memcpy(buf + got, &v, k);
        got += k;
    }
}
