/*
 * fuzz_uwsgi_reply.c - libFuzzer target for the uWSGI cache reply parser
 * (backends/uwsgi_proto.c): any bytes a server sends must give a result or
 * a failure, and a value must lie inside the bytes given.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine \
 *       spec/fuzz/fuzz_uwsgi_reply.c backends/uwsgi_proto.c engine/util.c \
 *       -lcrypto -lm -o /tmp/fuzz_uwsgi_reply
 *   /tmp/fuzz_uwsgi_reply -max_len=70000 -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/uwsgi_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so that a read past the end is caught
     * by ASan (the fuzzer's own buffer may be larger). */
    unsigned char *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    cache_err err = {0, ""};
    size_t need = 0;
    int rc = uwsgi_proto_reply_need(p, size, &need, &err);
    if (rc != CACHE_OK && rc != CACHE_FAIL)
        abort();
    if (rc == CACHE_OK && size >= 4 && need < 4)
        abort();
    uwsgi_reply r;
    rc = uwsgi_proto_parse_reply(p, size, &r, &err);
    if (rc != CACHE_OK && rc != CACHE_MISS && rc != CACHE_FAIL)
        abort();
    if (rc == CACHE_OK && r.has_value) {
        if ((const unsigned char *)r.value < p ||
            (const unsigned char *)r.value + r.value_len > p + size)
            abort();
        volatile unsigned char sum = 0; /* touch every value byte */
        for (size_t i = 0; i < r.value_len; i++)
            sum ^= (unsigned char)r.value[i];
        (void)sum;
    }
    if (rc == CACHE_FAIL && err.msg[0] == '\0')
        abort(); /* a failure always says why */
    free(p);
    return 0;
}
