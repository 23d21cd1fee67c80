/*
 * options.c - typed access to a backend's options, and the check that
 * nothing unknown was given.
 */
#include <math.h>
#include <string.h>

#include "cache.h"

static cache_opt *find(cache_opts *o, const char *name)
{
    for (size_t i = 0; i < o->count; i++)
        if (strcmp(o->items[i].name, name) == 0)
            return &o->items[i];
    return NULL;
}

static const char *type_name(cache_opt_type t)
{
    switch (t) {
    case CACHE_OPT_BOOL: return "boolean";
    case CACHE_OPT_INT:
    case CACHE_OPT_NUM: return "number";
    case CACHE_OPT_STR: return "string";
    case CACHE_OPT_LIST: return "table";
    case CACHE_OPT_PTR: return "userdata";
    }
    return "?";
}

static int wrong_type(cache_err *err, const cache_opt *it, const char *want)
{
    return cache_fail(err, CACHE_EINVAL, "option '%s': %s expected, got %s",
                      it->name, want, type_name(it->type));
}

int cache_opt_bool(cache_opts *o, const char *name, int *out, cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    if (it->type != CACHE_OPT_BOOL)
        return wrong_type(err, it, "boolean");
    *out = it->b;
    return 1;
}

int cache_opt_int(cache_opts *o, const char *name, int64_t min, int64_t max,
                  int64_t *out, cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    int64_t v;
    if (it->type == CACHE_OPT_INT)
        v = it->i;
    else if (it->type == CACHE_OPT_NUM && it->n == floor(it->n) &&
             fabs(it->n) < 9.2e18)
        v = (int64_t)it->n;
    else if (it->type == CACHE_OPT_NUM)
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': integer expected, got %g", name, it->n);
    else
        return wrong_type(err, it, "integer");
    if (v < min || v > max)
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': %lld is out of range [%lld, %lld]",
                          name, (long long)v, (long long)min, (long long)max);
    *out = v;
    return 1;
}

int cache_opt_num(cache_opts *o, const char *name, double min, double max,
                  double *out, cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    if (it->type != CACHE_OPT_NUM && it->type != CACHE_OPT_INT)
        return wrong_type(err, it, "number");
    double v = it->n;
    if (isnan(v) || v < min || v > max)
        return cache_fail(err, CACHE_EINVAL,
                          "option '%s': %g is out of range [%g, %g]", name, v,
                          min, max);
    *out = v;
    return 1;
}

int cache_opt_str(cache_opts *o, const char *name, const char **out,
                  size_t *len, cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    if (it->type != CACHE_OPT_STR)
        return wrong_type(err, it, "string");
    *out = it->s;
    if (len)
        *len = it->slen;
    return 1;
}

int cache_opt_list(cache_opts *o, const char *name, const cache_opt **out,
                   cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    if (it->type == CACHE_OPT_STR) {
        /* a single string is a list of one */
        it->type = CACHE_OPT_LIST;
        it->list = &it->s;
        it->list_lens = &it->slen;
        it->count = 1;
    }
    if (it->type != CACHE_OPT_LIST)
        return wrong_type(err, it, "list of strings");
    *out = it;
    return 1;
}

int cache_opt_ptr(cache_opts *o, const char *name, const char *tag,
                  void **out, cache_err *err)
{
    cache_opt *it = find(o, name);
    if (!it)
        return 0;
    it->used = 1;
    if (it->type != CACHE_OPT_PTR || !it->ptag || strcmp(it->ptag, tag) != 0)
        return wrong_type(err, it, tag);
    *out = it->p;
    return 1;
}

int cache_opts_check_unused(const cache_opts *o, const char *backend,
                            cache_err *err)
{
    (void)backend; /* the binding names the backend in front of the message */
    for (size_t i = 0; i < o->count; i++)
        if (!o->items[i].used)
            return cache_fail(err, CACHE_EINVAL, "unknown option '%s'",
                              o->items[i].name);
    return CACHE_OK;
}
