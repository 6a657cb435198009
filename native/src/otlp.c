/* otlp.c - one OTLP span, protobuf-encoded; see apigw/otlp.h.
 *
 * Everything is checked and the span's size computed before the first byte is written,
 * so the writing itself has no bounds checks and a refused span leaves buf untouched. */
#include "apigw/otlp.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* A hex digit's value + 1; 0 for every other byte. */
static const unsigned char HEXVAL[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
    ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16,
};

/* 1 when s[0, n) is all hex digits. */
static int hex_ok(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= HEXVAL[u[i]] == 0;
    return !bad;
}

/* n / 2 bytes from n checked hex digits. */
static char *unhex(char *p, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 2)
        *p++ = (char)((HEXVAL[u[i]] - 1) << 4 | (HEXVAL[u[i + 1]] - 1));
    return p;
}

/* Python's int(t * 1e9 + off_ns) into *ns; 0 when that is not a uint64. */
static int to_ns(double t, double off_ns, uint64_t *ns) {
    double v = t * 1e9 + off_ns;   /* two roundings: -ffp-contract=off */
    if (!(v >= 0) || !(v < 18446744073709551616.0))   /* NaN fails both */
        return 0;
    *ns = (uint64_t)v;
    return 1;
}

static char *fixed64(char *p, unsigned char tag, uint64_t v) {
    *p++ = (char)tag;
    for (int i = 0; i < 8; i++, v >>= 8)
        *p++ = (char)(v & 0xFF);
    return p;
}

static size_t varint_len(size_t n) {
    size_t k = 1;
    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

static char *copy(char *p, const char *s, size_t n) {
    if (n)   /* (s may be NULL when n is 0) */
        memcpy(p, s, n);
    return p + n;
}

long apigw_otlp_span(char *buf, size_t off, size_t cap, const char *trace_hex, size_t trace_n,
                     const char *span_hex, size_t span_n, const char *parent_hex,
                     size_t parent_n, const char *name, size_t name_n, unsigned kind,
                     double start, double end, double off_s, const char *attrs,
                     size_t attrs_n, const char *tail, size_t tail_n) {
    uint64_t start_ns, end_ns;
    double off_ns = off_s * 1e9;
    if (trace_n != 32 || span_n != 16 || (parent_n != 0 && parent_n != 16) || kind >= 128
        || !hex_ok(trace_hex, 32) || !hex_ok(span_hex, 16) || !hex_ok(parent_hex, parent_n)
        || !to_ns(start, off_ns, &start_ns) || !to_ns(end, off_ns, &end_ns))
        return APIGW_OTLP_E_INPUT;
    if (off > cap)
        return APIGW_OTLP_E_SPACE;
    size_t room = cap - off;
    /* ids 18 + 10 [+ 10], kind 2, times 9 + 9; each variable part must fit on its own
     * first, so that the sums below cannot wrap */
    size_t body = 48 + (parent_n ? 10 : 0);
    if (name_n > room || attrs_n > room || tail_n > room)
        return APIGW_OTLP_E_SPACE;
    body += name_n;
    if (attrs_n > SIZE_MAX - body || tail_n > SIZE_MAX - body - attrs_n)
        return APIGW_OTLP_E_SPACE;
    body += attrs_n + tail_n;
    if (body > room || room - body < 1 + varint_len(body)
        || body + 1 + varint_len(body) > (size_t)LONG_MAX)
        return APIGW_OTLP_E_SPACE;

    char *out = buf + off, *p = out;
    *p++ = 0x12;
    for (size_t n = body; ; n >>= 7) {
        if (n < 0x80) {
            *p++ = (char)n;
            break;
        }
        *p++ = (char)((n & 0x7F) | 0x80);
    }
    *p++ = 0x0a;
    *p++ = 0x10;
    p = unhex(p, trace_hex, 32);
    *p++ = 0x12;
    *p++ = 0x08;
    p = unhex(p, span_hex, 16);
    if (parent_n) {
        *p++ = 0x22;
        *p++ = 0x08;
        p = unhex(p, parent_hex, 16);
    }
    p = copy(p, name, name_n);
    *p++ = 0x30;
    *p++ = (char)kind;
    p = fixed64(p, 0x39, start_ns);
    p = fixed64(p, 0x41, end_ns);
    p = copy(p, attrs, attrs_n);
    p = copy(p, tail, tail_n);
    return (long)(p - out);
}

/* The next of `parts`' fields: a 4-byte little-endian length and its bytes. */
static int part(const char **p, const char *end, const char **s, size_t *n) {
    if ((size_t)(end - *p) < 4)
        return 0;
    const unsigned char *u = (const unsigned char *)*p;
    size_t len = (size_t)u[0] | (size_t)u[1] << 8 | (size_t)u[2] << 16 | (size_t)u[3] << 24;
    *p += 4;
    if (len > (size_t)(end - *p))
        return 0;
    *s = *p;
    *n = len;
    *p += len;
    return 1;
}

long apigw_otlp_pair(char *buf, size_t off, size_t cap, const char *parts, size_t parts_n,
                     const char *trace, const char *span, const char *parent,
                     const char *cspan, double start, double end, double t0, double t1,
                     double off_s) {
    const char *f[6], *p = parts, *e = parts + parts_n;
    size_t n[6];
    for (int i = 0; i < 6; i++)
        if (!part(&p, e, &f[i], &n[i]))
            return APIGW_OTLP_E_INPUT;
    if (p != e)
        return APIGW_OTLP_E_INPUT;
    size_t tn = strlen(trace), sn = strlen(span), pn = strlen(parent), cn = strlen(cspan);
    /* the CLIENT span's input first, with no room (input is checked before space) */
    long c = apigw_otlp_span(buf, 0, 0, trace, tn, cspan, cn, span, sn, f[3], n[3], 3, t0, t1,
                             off_s, f[4], n[4], f[5], n[5]);
    if (c == APIGW_OTLP_E_INPUT)
        return c;
    long s = apigw_otlp_span(buf, off, cap, trace, tn, span, sn, parent, pn, f[0], n[0], 2,
                             start, end, off_s, f[1], n[1], f[2], n[2]);
    if (s < 0)
        return s;
    c = apigw_otlp_span(buf, off + (size_t)s, cap, trace, tn, cspan, cn, span, sn, f[3], n[3],
                        3, t0, t1, off_s, f[4], n[4], f[5], n[5]);
    if (c < 0)
        return c;
    return c > LONG_MAX - s ? APIGW_OTLP_E_SPACE : s + c;
}
