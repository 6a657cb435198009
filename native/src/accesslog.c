/* accesslog.c - one JSON access-log line; see apigw/accesslog.h. */
#include "apigw/accesslog.h"

#include <string.h>

#include "apigw/ws.h"

typedef struct {
    char *p, *end;
    int full;
} W;

static void put(W *w, const char *s, size_t n) {
    if ((size_t)(w->end - w->p) < n) {
        w->full = 1;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define LIT(w, s) put((w), (s), sizeof(s) - 1)

static const char HEX[] = "0123456789abcdef";

/* The bytes byte c takes in a string: 1, 2 (short escape or latin-1 >= 0x80), 6 (\u00XX). */
static size_t width(unsigned c, int latin1) {
    if (c >= 0x80)
        return latin1 ? 2 : 1;
    if (c >= 0x20)
        return c == '"' || c == '\\' ? 2 : 1;
    return c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t' ? 2 : 6;
}

/* A quoted string; latin1: bytes >= 0x80 are code points (two UTF-8 bytes), else they are
 * kept (UTF-8 already checked).  Each byte is written only if it and the closing quote
 * fit, so a line is refused only when it does not fit. */
static void str(W *w, const char *s, size_t n, int latin1) {
    const unsigned char *u = (const unsigned char *)s;
    char *p = w->p;
    if ((size_t)(w->end - p) < n + 2) {
        w->full = 1;
        return;
    }
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned c = u[i];
        if ((size_t)(w->end - p) < width(c, latin1) + 1) {
            w->full = 1;
            return;
        }
        if (c >= 0x80) {
            if (latin1) {
                *p++ = (char)(0xC0 | (c >> 6));
                *p++ = (char)(0x80 | (c & 0x3F));
            } else
                *p++ = (char)c;
        } else if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
        } else {
            *p++ = '\\';
            switch (c) {
            case '"': *p++ = '"'; break;
            case '\\': *p++ = '\\'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            default:
                *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = HEX[c >> 4]; *p++ = HEX[c & 15];
            }
        }
    }
    *p++ = '"';
    w->p = p;
}

static void nullable(W *w, const char *s, size_t n, int latin1) {
    if (s == NULL || n == 0)
        LIT(w, "null");
    else
        str(w, s, n, latin1);
}

static int utf8_ok(const char *s, size_t n) {
    return s == NULL || apigw_ws_utf8(0, (const unsigned char *)s, n, NULL, 0, 1) >= 0;
}

static void num(W *w, int64_t v) {
    char buf[24], *e = buf + sizeof buf, *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    put(w, p, (size_t)(e - p));
}

/* "." and v's last three decimal digits (a millisecond or microsecond part). */
static void frac3(W *w, int64_t v) {
    char d[4] = {'.', (char)('0' + v / 100 % 10), (char)('0' + v / 10 % 10),
                 (char)('0' + v % 10)};
    put(w, d, 4);
}

/* Seconds as milliseconds with three decimals, rounded as the twin rounds
 * (int(v * 1e6 + 0.5) microseconds). */
static void ms(W *w, double v) {
    if (v < 0) {
        LIT(w, "null");
        return;
    }
    int64_t us = (int64_t)(v * 1e6 + 0.5);
    num(w, us / 1000);
    frac3(w, us);
}

long apigw_al_line(char *buf, size_t off, size_t cap, const char *sec, size_t sec_n,
                   double start,
                   const char *rid, size_t rid_n, const char *trace, size_t trace_n,
                   const char *path, size_t path_n, int64_t status, int64_t bytes_in,
                   int64_t bytes_out, double total, double backend, double client,
                   const char *rest, size_t rest_n) {
    if (!(total < 1e12) || !(backend < 1e12) || !(client < 1e12) || !(start >= 0)
        || !(start < 9007199254740992.0) || !utf8_ok(path, path_n))
        return APIGW_AL_E_FALLBACK;
    if (off > cap)
        return APIGW_AL_E_SPACE;
    char *out = buf + off;
    W w = {out, buf + cap, 0};
    LIT(&w, "{\"time\":\"");
    put(&w, sec, sec_n);
    frac3(&w, (int64_t)(start * 1000)); /* as Python's int(start * 1000) % 1000 */
    LIT(&w, "Z\",\"request_id\":");
    nullable(&w, rid, rid_n, 1);
    LIT(&w, ",\"trace_id\":\"");
    put(&w, trace, trace_n);
    LIT(&w, "\",\"path\":");
    str(&w, path, path_n, 0);
    LIT(&w, ",\"status\":");
    num(&w, status);
    LIT(&w, ",\"bytes_in\":");
    num(&w, bytes_in);
    LIT(&w, ",\"bytes_out\":");
    num(&w, bytes_out);
    LIT(&w, ",\"duration_ms\":");
    ms(&w, total);
    LIT(&w, ",\"backend_duration_ms\":");
    ms(&w, backend);
    LIT(&w, ",\"client_duration_ms\":");
    ms(&w, client);
    LIT(&w, ",");
    put(&w, rest, rest_n);
    LIT(&w, "}\n");
    return w.full ? APIGW_AL_E_SPACE : (long)(w.p - out);
}

/* The civil date of day `days` since 1970-01-01 (proleptic Gregorian; H. Hinnant's
 * days-to-civil, valid for every non-negative day here). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d) {
    int64_t z = days + 719468, era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void two(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

long apigw_al_put(apigw_al_batch *b, double start, const char *rid, size_t rid_n,
                  const char *trace, const char *path, size_t path_n, int64_t status,
                  int64_t bytes_in, int64_t bytes_out, double total, double backend,
                  double client, const char *rest) {
    /* 253402300800: 10000-01-01T00:00:00Z, where %Y would need a fifth digit */
    if (!(start >= 0) || !(start < 253402300800.0))
        return APIGW_AL_E_FALLBACK;
    int64_t sec = (int64_t)start;
    if (sec != b->sec) {
        int64_t y;
        unsigned mo, d, s = (unsigned)(sec % 86400);
        civil(sec / 86400, &y, &mo, &d);
        char *t = b->sec_text;
        two(t, (unsigned)(y / 100));
        two(t + 2, (unsigned)(y % 100));
        t[4] = '-';
        two(t + 5, mo);
        t[7] = '-';
        two(t + 8, d);
        t[10] = 'T';
        two(t + 11, s / 3600);
        t[13] = ':';
        two(t + 14, s / 60 % 60);
        t[16] = ':';
        two(t + 17, s % 60);
        t[19] = '\0';
        b->sec = sec;
    }
    long n = apigw_al_line(b->buf, b->off, b->cap, b->sec_text, 19, start, rid, rid_n,
                           trace, strlen(trace), path, path_n, status, bytes_in, bytes_out,
                           total, backend, client, rest, strlen(rest));
    if (n > 0)
        b->off += (size_t)n;
    return n;
}
