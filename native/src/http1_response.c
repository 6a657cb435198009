/* http1_response.c - strict HTTP/1.1 response-head parser; contract in
 * apigw/http1_response.h.
 *
 * Strategy: find the end of the head first (memchr for LF, as the Python code used
 * bytes.find), then check the status line and each field line whole, storing offsets and
 * the lower-cased "reason\0name\0value\0..." copy on the way, and run the framing rules
 * over the stored fields afterwards: that is the order the Python code had, and the twin
 * keeps it.  Every loop is bounded by the head's end, which is inside buf[off, len).
 */
#include "apigw/http1_response.h"

#include <string.h>

enum { R_TOKEN = 1, R_TEXT = 2 /* HTAB / SP / VCHAR / obs-text */ };

static const unsigned char RCLS[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 3, 2, 3, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 2,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2,
    2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 2, 3, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

static inline int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static int eq_lower(const unsigned char *s, size_t n, const char *lit, size_t litn)
{
    if (n != litn)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

/* Offset of the first CRLF at or after `from` whose LF lies before `lim`, or -1. */
static long find_crlf(const unsigned char *b, size_t from, size_t lim)
{
    size_t i = from + 1;
    while (i < lim) {
        const unsigned char *q = memchr(b + i, '\n', lim - i);
        if (q == NULL)
            return -1;
        i = (size_t)(q - b);
        if (b[i - 1] == '\r')
            return (long)(i - 1);
        i++;
    }
    return -1;
}

/* Offset of the first CRLF CRLF ending at or before `lim`, or -1. */
static long find_head_end(const unsigned char *b, size_t lim)
{
    size_t i = 3;
    while (i < lim) {
        const unsigned char *q = memchr(b + i, '\n', lim - i);
        if (q == NULL)
            return -1;
        i = (size_t)(q - b);
        if (b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r')
            return (long)(i - 3);
        i++;
    }
    return -1;
}

/* The fault of a field line that failed the grammar, named as the Python code names it. */
static long field_fault(const unsigned char *s, size_t n)
{
    const unsigned char *colon;
    size_t nl;
    if (n > 0 && is_ows(s[0]))
        return APIGW_H1R_E_OBS_FOLD;
    if (n > 0 && memchr(s, '\r', n) != NULL)
        return APIGW_H1R_E_FIELD_BARE_CR;
    if (n > 0 && memchr(s, '\n', n) != NULL)
        return APIGW_H1R_E_FIELD_BARE_LF;
    colon = n > 0 ? memchr(s, ':', n) : NULL;
    if (colon == NULL)
        return APIGW_H1R_E_MISSING_COLON;
    nl = (size_t)(colon - s);
    if (nl > 0 && is_ows(s[nl - 1]))
        return APIGW_H1R_E_WS_BEFORE_COLON;
    if (nl == 0)
        return APIGW_H1R_E_BAD_FIELD_NAME;
    for (size_t i = 0; i < nl; i++)
        if (!(RCLS[s[i]] & R_TOKEN))
            return APIGW_H1R_E_BAD_FIELD_NAME;
    return APIGW_H1R_E_BAD_FIELD_VALUE;
}

/* Framing rules over the stored fields (final responses only). */
static long framing(apigw_h1_response *r, const unsigned char *b)
{
    int chunked = 0;
    for (uint32_t k = 0; k < r->num_fields; k++) {
        const apigw_h1_field *f = &r->fields[k];
        const unsigned char *name = b + f->name_off, *v = b + f->value_off;
        size_t n = f->value_len;
        if (eq_lower(name, f->name_len, "content-length", 14)) {
            int64_t cl = 0;
            if (r->content_length >= 0)
                return APIGW_H1R_E_REPEATED_CONTENT_LENGTH;
            if (n == 0 || n > 18)
                return APIGW_H1R_E_BAD_CONTENT_LENGTH;
            for (size_t i = 0; i < n; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return APIGW_H1R_E_BAD_CONTENT_LENGTH;
                cl = cl * 10 + (v[i] - '0');  /* 18 digits: no overflow */
            }
            r->content_length = cl;
        } else if (eq_lower(name, f->name_len, "transfer-encoding", 17)) {
            size_t i = 0;
            for (;;) {  /* every element, empty ones included, must be the one chunked */
                size_t a = i, e;
                while (i < n && v[i] != ',')
                    i++;
                e = i;
                while (a < e && is_ows(v[a]))
                    a++;
                while (e > a && is_ows(v[e - 1]))
                    e--;
                if (chunked || !eq_lower(v + a, e - a, "chunked", 7))
                    return APIGW_H1R_E_BAD_TRANSFER_ENCODING;
                chunked = 1;
                if (i >= n)
                    break;
                i++;
            }
        } else if (eq_lower(name, f->name_len, "connection", 10)) {
            size_t i = 0;
            for (;;) {
                size_t a = i, e;
                while (i < n && v[i] != ',')
                    i++;
                e = i;
                while (a < e && is_ows(v[a]))
                    a++;
                while (e > a && is_ows(v[e - 1]))
                    e--;
                if (eq_lower(v + a, e - a, "close", 5))
                    r->flags |= APIGW_H1_F_CONN_CLOSE;
                else if (eq_lower(v + a, e - a, "keep-alive", 10))
                    r->flags |= APIGW_H1_F_CONN_KEEP_ALIVE;
                if (i >= n)
                    break;
                i++;
            }
        }
    }
    if (chunked) {
        if (r->content_length >= 0)
            return APIGW_H1R_E_TE_WITH_CONTENT_LENGTH;
        if (!r->version_minor)
            return APIGW_H1R_E_TE_ON_HTTP10;
        r->flags |= APIGW_H1_F_CHUNKED;
    }
    return 0;
}

long apigw_h1_parse_response(apigw_h1_response *r, const unsigned char *buf, size_t off,
                             size_t len)
{
    const unsigned char *b = buf + off;
    size_t n = len > off ? len - off : 0;
    size_t win = n < r->max_head ? n : r->max_head;
    size_t sl, s, o = 0, count = 0, cap = r->out != NULL ? r->out_cap : 0;
    long end = find_head_end(b, win), e;

    if (end < 0) {
        static const char prefix[] = "HTTP/";
        const unsigned char *q;
        for (size_t i = 0; i < n && i < 5; i++)
            if (b[i] != (unsigned char)prefix[i])
                return APIGW_H1R_E_NOT_HTTP;
        for (size_t i = 0; i < n; i = (size_t)(q - b) + 1) {
            q = memchr(b + i, '\n', n - i);
            if (q == NULL)
                break;
            if (q == b || q[-1] != '\r')
                return APIGW_H1R_E_BARE_LF;
        }
        return n >= r->max_head ? APIGW_H1R_E_HEAD_TOO_LARGE : APIGW_H1R_INCOMPLETE;
    }

    /* status line: b[0, sl) */
    e = find_crlf(b, 0, (size_t)end + 2);
    sl = (size_t)e;  /* found: the head's end is a CRLF */
    if (sl < 12 || memcmp(b, "HTTP/", 5) != 0 || b[5] < '0' || b[5] > '9' || b[6] != '.'
        || b[7] < '0' || b[7] > '9' || b[8] != ' ' || b[9] < '0' || b[9] > '9'
        || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
        return APIGW_H1R_E_STATUS_LINE;
    if (sl > 12) {
        if (b[12] != ' ')
            return APIGW_H1R_E_STATUS_LINE;
        for (size_t i = 13; i < sl; i++)
            if (!(RCLS[b[i]] & R_TEXT))
                return APIGW_H1R_E_STATUS_LINE;
    }
    if (b[5] != '1')
        return APIGW_H1R_E_MAJOR_VERSION;
    r->version_minor = b[7] != '0';
    r->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (r->status < 100)
        return APIGW_H1R_E_STATUS_BELOW_100;
    r->reason_off = sl > 12 ? 13 : 12;
    r->reason_len = (uint32_t)(sl - r->reason_off);
    if (r->reason_len + 1 > cap && r->out != NULL)
        return APIGW_H1R_E_HEAD_TOO_LARGE;  /* out_cap below max_head: caller's bug */
    if (r->out != NULL) {
        memcpy(r->out, b + r->reason_off, r->reason_len);
        r->out[r->reason_len] = 0;
        o = r->reason_len + 1;
    }

    /* field lines: b[sl + 2, end) */
    for (s = sl + 2; s < (size_t)end + 2 && sl < (size_t)end; s = (size_t)e + 2) {
        size_t i = s, a, z;
        e = find_crlf(b, s, (size_t)end + 2);
        while ((size_t)i < (size_t)e && (RCLS[b[i]] & R_TOKEN))
            i++;
        if (i == s || (size_t)i >= (size_t)e || b[i] != ':')
            return field_fault(b + s, (size_t)e - s);
        a = i + 1;
        for (size_t k = a; k < (size_t)e; k++)
            if (!(RCLS[b[k]] & R_TEXT))
                return field_fault(b + s, (size_t)e - s);
        z = (size_t)e;
        while (a < z && is_ows(b[a]))
            a++;
        while (z > a && is_ows(b[z - 1]))
            z--;
        if (count < r->max_fields) {
            apigw_h1_field *f = &r->fields[count];
            f->name_off = (uint32_t)s;
            f->name_len = (uint32_t)(i - s);
            f->value_off = (uint32_t)a;
            f->value_len = (uint32_t)(z - a);
            if (r->out != NULL) {
                if (o + (i - s) + (z - a) + 2 > cap)
                    return APIGW_H1R_E_HEAD_TOO_LARGE;
                for (size_t k = s; k < i; k++)
                    r->out[o++] = lower(b[k]);
                r->out[o++] = 0;
                memcpy(r->out + o, b + a, z - a);
                o += z - a;
                r->out[o++] = 0;
            }
        }
        count++;
        if ((size_t)e >= (size_t)end)
            break;
    }
    if (count > r->max_fields)
        return APIGW_H1R_E_TOO_MANY_FIELDS;
    r->num_fields = (uint32_t)count;
    r->flags = 0;
    r->content_length = -1;
    r->out_len = o;
    if (r->status >= 200) {
        long rc = framing(r, b);
        if (rc < 0)
            return rc;
    }
    return end + 4;
}
