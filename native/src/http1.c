/* http1.c - strict HTTP/1.1 request-head parser; the contract is in apigw/http1.h.
 *
 * Strategy: one forward pass over the caller's buffer with a 256-entry class table, no
 * allocation and no write outside the caller's slots.  Each scan stops at `end`, which
 * is the smaller of the data and the limit window, so limits cost nothing per byte and an
 * over-long head fails as soon as its window is full.  Framing rules that concern a
 * single field run when that field's line is complete; rules that need the whole head
 * (Transfer-Encoding vs Content-Length, Host presence) run after the empty line.
 */
#include "apigw/http1.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#else
#define likely(x) (x)
#define unlikely(x) (x)
#endif

enum {
    C_TOKEN = 1,  /* tchar (RFC 9110 §5.6.2) */
    C_VCHAR = 2,  /* VCHAR / obs-text: target and field-value characters */
    C_HOST = 4,   /* reg-name: unreserved / sub-delims (RFC 3986 §3.2.2) */
    C_IPLIT = 8,  /* inside "[...]": unreserved / sub-delims / ":" */
    C_HEX = 16,
    C_DIGIT = 32,
    C_VALUE = 64, /* VCHAR / obs-text / SP / HTAB */
    C_UPPER = 128 /* "A".."Z": (CLS & C_UPPER) >> 2 is the bit that lower-cases */
};

/* Generated from the RFC grammars; see _purepy/http1_head.py for the same sets. */
static const unsigned char CLS[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0, 64,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    64, 79, 66, 67, 79, 67, 79, 79, 78, 78, 79, 79, 78, 79, 79, 66,
   127,127,127,127,127,127,127,127,127,127, 74, 78, 66, 78, 66, 66,
    66,223,223,223,223,223,223,207,207,207,207,207,207,207,207,207,
   207,207,207,207,207,207,207,207,207,207,207, 66, 66, 66, 67, 79,
    67, 95, 95, 95, 95, 95, 95, 79, 79, 79, 79, 79, 79, 79, 79, 79,
    79, 79, 79, 79, 79, 79, 79, 79, 79, 79, 79, 66, 67, 66, 79,  0,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66, 66,
};

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Case-insensitive compare of buf[0, n) with a lower-case literal of length n. */
static int eq_lower(const unsigned char *s, size_t n, const char *lit)
{
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Skip bytes >= lo other than DEL, 16 at a time, never reading at or past `end`; the
 * scalar loop after it decides what the stopping byte means.  lo = 0x21 skips VCHAR and
 * obs-text (targets), lo = 0x20 adds SP (field values; HTAB is left to the scalar loop). */
static inline size_t skip_printable(const unsigned char *buf, size_t p, size_t end,
                                    unsigned char lo)
{
#ifdef __SSE2__
    const __m128i low = _mm_set1_epi8((char)lo), del = _mm_set1_epi8(0x7f);
    while (p + 16 <= end) {
        __m128i v = _mm_loadu_si128((const __m128i *)(buf + p));
        /* max(v, lo) == v  <=>  v >= lo (unsigned) */
        __m128i ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, del),
                                      _mm_cmpeq_epi8(_mm_max_epu8(v, low), v));
        unsigned mask = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
        if (mask != 0)
            return p + (size_t)__builtin_ctz(mask);
        p += 16;
    }
#else
    (void)lo;
    (void)end;
#endif
    return p;
}

/* uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2); an empty value is allowed. */
static int valid_host(const unsigned char *v, size_t n)
{
    size_t i = 0;
    if (n > 0 && v[0] == '[') {
        for (i = 1; i < n && v[i] != ']'; i++)
            if (!(CLS[v[i]] & C_IPLIT))
                return 0;
        if (i >= n || i == 1)
            return 0;
        i++; /* ']' */
    } else {
        while (i < n && v[i] != ':') {
            if (v[i] == '%') {
                if (i + 2 >= n || !(CLS[v[i + 1]] & C_HEX) || !(CLS[v[i + 2]] & C_HEX))
                    return 0;
                i += 3;
            } else if (CLS[v[i]] & C_HOST) {
                i++;
            } else {
                return 0;
            }
        }
    }
    if (i == n)
        return 1;
    if (v[i] != ':' || n - i - 1 > 5)
        return 0;
    for (i++; i < n; i++)
        if (!(CLS[v[i]] & C_DIGIT))
            return 0;
    return 1;
}

/* State carried across field lines for the whole-head rules. */
typedef struct {
    int64_t content_length;
    uint32_t flags;
    unsigned te_seen, te_chunked, te_other, te_last_chunked, hosts;
} head_state;

/* Transfer-Encoding: each comma-separated element must be a non-empty token. */
static long transfer_encoding(head_state *st, const unsigned char *v, size_t n)
{
    size_t i = 0;
    st->te_seen = 1;
    for (;;) {
        size_t a, b;
        while (i < n && is_ows(v[i]))
            i++;
        a = i;
        while (i < n && v[i] != ',')
            i++;
        b = i;
        while (b > a && is_ows(v[b - 1]))
            b--;
        if (b == a)
            return APIGW_H1_E_BAD_TRANSFER_ENCODING;
        for (size_t k = a; k < b; k++)
            if (!(CLS[v[k]] & C_TOKEN))
                return APIGW_H1_E_BAD_TRANSFER_ENCODING;
        if (b - a == 7 && eq_lower(v + a, 7, "chunked")) {
            st->te_chunked++;
            st->te_last_chunked = 1;
        } else {
            st->te_other++;
            st->te_last_chunked = 0;
        }
        if (i >= n)
            return 0;
        i++; /* ',' */
    }
}

/* Connection: a list of tokens; empty elements are skipped (RFC 9110 §5.6.1). */
static long connection(head_state *st, const unsigned char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t a, b, len;
        while (i < n && is_ows(v[i]))
            i++;
        a = i;
        while (i < n && v[i] != ',')
            i++;
        b = i;
        while (b > a && is_ows(v[b - 1]))
            b--;
        i++; /* ',' or past the end */
        len = b - a;
        if (len == 0)
            continue;
        for (size_t k = a; k < b; k++)
            if (!(CLS[v[k]] & C_TOKEN))
                return APIGW_H1_E_BAD_CONNECTION;
        if (len == 5 && eq_lower(v + a, 5, "close"))
            st->flags |= APIGW_H1_F_CONN_CLOSE;
        else if (len == 10 && eq_lower(v + a, 10, "keep-alive"))
            st->flags |= APIGW_H1_F_CONN_KEEP_ALIVE;
        else if (len == 7 && eq_lower(v + a, 7, "upgrade"))
            st->flags |= APIGW_H1_F_CONN_UPGRADE;
        else if ((len == 14 && eq_lower(v + a, 14, "content-length")) ||
                 (len == 17 && eq_lower(v + a, 17, "transfer-encoding")) ||
                 (len == 4 && eq_lower(v + a, 4, "host")))
            return APIGW_H1_E_CONNECTION_NAMES_FRAMING;
    }
    return 0;
}

/* The rules that a single field line decides; 0 when it passes. */
static long field_rule(head_state *st, const unsigned char *name, size_t nlen,
                       const unsigned char *v, size_t vlen)
{
    switch (nlen) {
    case 4:
        if (eq_lower(name, 4, "host")) {
            if (++st->hosts > 1)
                return APIGW_H1_E_DUPLICATE_HOST;
            return valid_host(v, vlen) ? 0 : APIGW_H1_E_BAD_HOST;
        }
        break;
    case 6:
        if (eq_lower(name, 6, "expect") && vlen == 12 && eq_lower(v, 12, "100-continue"))
            st->flags |= APIGW_H1_F_EXPECT_CONTINUE;
        break;
    case 7:
        if (eq_lower(name, 7, "upgrade"))
            st->flags |= APIGW_H1_F_UPGRADE;
        break;
    case 10:
        if (eq_lower(name, 10, "connection"))
            return connection(st, v, vlen);
        break;
    case 14:
        if (eq_lower(name, 14, "content-length")) {
            int64_t cl = 0;
            if (st->content_length >= 0)
                return APIGW_H1_E_DUPLICATE_CONTENT_LENGTH;
            if (vlen == 0)
                return APIGW_H1_E_BAD_CONTENT_LENGTH;
            for (size_t i = 0; i < vlen; i++) {
                int d = v[i] - '0';
                if (!(CLS[v[i]] & C_DIGIT) || cl > (INT64_MAX - d) / 10)
                    return APIGW_H1_E_BAD_CONTENT_LENGTH;
                cl = cl * 10 + d;
            }
            st->content_length = cl;
        }
        break;
    case 17:
        if (eq_lower(name, 17, "transfer-encoding"))
            return transfer_encoding(st, v, vlen);
        break;
    default:
        break;
    }
    return 0;
}

long apigw_h1_parse_request(const unsigned char *buf, size_t len,
                            const apigw_h1_limits *limits, apigw_h1_request *req,
                            apigw_h1_field *fields, unsigned char *out, size_t out_cap)
{
    const size_t max_head = limits->max_head;
    const size_t end = len < max_head ? len : max_head; /* head window */
    size_t p = 0, rl_limit, rend, m0, t0;
    unsigned major, minor;
    uint32_t nf = 0;
    head_state st = {-1, 0, 0, 0, 0, 0, 0};
    static const char VERSION[] = "HTTP/";

    /* Empty lines before the request line are ignored (RFC 9112 §2.2). */
    for (;;) {
        if (p >= end)
            goto out_of_window;
        if (buf[p] == '\n')
            return APIGW_H1_E_BARE_LF;
        if (buf[p] != '\r')
            break;
        if (p + 1 >= end)
            goto out_of_window;
        if (buf[p + 1] != '\n')
            return APIGW_H1_E_BARE_CR;
        p += 2;
    }

    /* request-line = method SP request-target SP HTTP-version CRLF (§3) */
    rl_limit = p + (size_t)limits->max_request_line + 2;
    rend = rl_limit < end ? rl_limit : end;
    m0 = p;
    while (p < rend && (CLS[buf[p]] & C_TOKEN))
        p++;
    if (p >= rend)
        goto request_line_cut;
    if (buf[p] != ' ' || p == m0)
        return APIGW_H1_E_BAD_METHOD;
    req->method_off = (uint32_t)m0;
    req->method_len = (uint32_t)(p - m0);
    t0 = ++p;
    p = skip_printable(buf, p, rend, 0x21);
    while (p < rend && (CLS[buf[p]] & C_VCHAR))
        p++;
    if (p >= rend)
        goto request_line_cut;
    if (buf[p] != ' ')
        return (buf[p] == '\r' || buf[p] == '\n') ? APIGW_H1_E_BAD_REQUEST_LINE
                                                  : APIGW_H1_E_BAD_TARGET;
    if (p == t0)
        return APIGW_H1_E_BAD_TARGET;
    req->target_off = (uint32_t)t0;
    req->target_len = (uint32_t)(p - t0);
    p++;
    for (int i = 0; i < 5; i++, p++) {
        if (p >= rend)
            goto request_line_cut;
        if (buf[p] != (unsigned char)VERSION[i])
            return APIGW_H1_E_BAD_VERSION;
    }
    if (p >= rend)
        goto request_line_cut;
    if (!(CLS[buf[p]] & C_DIGIT))
        return APIGW_H1_E_BAD_VERSION;
    major = buf[p++] - '0';
    if (p >= rend)
        goto request_line_cut;
    if (buf[p++] != '.')
        return APIGW_H1_E_BAD_VERSION;
    if (p >= rend)
        goto request_line_cut;
    if (!(CLS[buf[p]] & C_DIGIT))
        return APIGW_H1_E_BAD_VERSION;
    minor = buf[p++] - '0';
    if (p >= rend)
        goto request_line_cut;
    if (buf[p] != '\r')
        return buf[p] == '\n' ? APIGW_H1_E_BARE_LF : APIGW_H1_E_BAD_VERSION;
    if (++p >= rend)
        goto request_line_cut;
    if (buf[p++] != '\n')
        return APIGW_H1_E_BARE_CR;
    if (major != 1)
        return APIGW_H1_E_VERSION_NOT_SUPPORTED;
    req->version_minor = minor == 0 ? 0 : 1;

    /* field-line = field-name ":" OWS field-value OWS CRLF (§5) */
    for (;;) {
        size_t n0, nlen, v0, v1;
        long rc;
        if (p >= end)
            goto out_of_window;
        if (buf[p] == '\r') {
            if (p + 1 >= end)
                goto out_of_window;
            if (buf[p + 1] != '\n')
                return APIGW_H1_E_BARE_CR;
            p += 2;
            break;
        }
        if (buf[p] == '\n')
            return APIGW_H1_E_BARE_LF;
        if (is_ows(buf[p]))
            return APIGW_H1_E_OBS_FOLD;
        if (unlikely(nf == limits->max_fields))
            return APIGW_H1_E_TOO_MANY_FIELDS;
        n0 = p;
        while (p < end && (CLS[buf[p]] & C_TOKEN))
            p++;
        if (p >= end)
            goto out_of_window;
        if (buf[p] != ':')
            return is_ows(buf[p]) ? APIGW_H1_E_WS_BEFORE_COLON : APIGW_H1_E_BAD_FIELD_NAME;
        if (p == n0)
            return APIGW_H1_E_BAD_FIELD_NAME;
        nlen = p - n0;
        p++;
        while (p < end && is_ows(buf[p]))
            p++;
        v0 = p;
        p = skip_printable(buf, p, end, 0x20);
        while (p < end && (CLS[buf[p]] & C_VALUE))
            p++;
        if (p >= end)
            goto out_of_window;
        if (buf[p] != '\r')
            return buf[p] == '\n' ? APIGW_H1_E_BARE_LF : APIGW_H1_E_BAD_FIELD_VALUE;
        if (p + 1 >= end)
            goto out_of_window;
        if (buf[p + 1] != '\n')
            return APIGW_H1_E_BARE_CR;
        v1 = p;
        while (v1 > v0 && is_ows(buf[v1 - 1]))
            v1--;
        p += 2;
        rc = field_rule(&st, buf + n0, nlen, buf + v0, v1 - v0);
        if (unlikely(rc != 0))
            return rc;
        fields[nf].name_off = (uint32_t)n0;
        fields[nf].name_len = (uint32_t)nlen;
        fields[nf].value_off = (uint32_t)v0;
        fields[nf].value_len = (uint32_t)(v1 - v0);
        nf++;
    }

    /* Message body length (§6.3): only "chunked", last and once, frames a request. */
    if (st.te_seen) {
        if (req->version_minor == 0)
            return APIGW_H1_E_TE_ON_HTTP10;
        if (st.content_length >= 0)
            return APIGW_H1_E_TE_WITH_CONTENT_LENGTH;
        if (st.te_chunked != 1 || !st.te_last_chunked)
            return APIGW_H1_E_BAD_TRANSFER_ENCODING;
        if (st.te_other)
            return APIGW_H1_E_UNSUPPORTED_TRANSFER_CODING;
        st.flags |= APIGW_H1_F_CHUNKED;
    }
    if (req->version_minor == 1 && st.hosts == 0)
        return APIGW_H1_E_MISSING_HOST;

    req->num_fields = nf;
    req->flags = st.flags;
    req->content_length = st.content_length;
    req->out_len = 0;
    if (out != NULL) {
        /* "method\0target\0name\0value..." is never longer than the head it came from. */
        unsigned char *o = out;
        if (out_cap < p)
            return APIGW_H1_E_HEAD_TOO_LARGE;
        memcpy(o, buf + req->method_off, req->method_len);
        o += req->method_len;
        *o++ = '\0';
        memcpy(o, buf + req->target_off, req->target_len);
        o += req->target_len;
        for (uint32_t i = 0; i < nf; i++) {
            const unsigned char *s = buf + fields[i].name_off;
            *o++ = '\0';
            for (uint32_t k = 0, n = fields[i].name_len; k < n; k++)
                o[k] = s[k] | (unsigned char)((CLS[s[k]] & C_UPPER) >> 2);
            o += fields[i].name_len;
            *o++ = '\0';
            memcpy(o, buf + fields[i].value_off, fields[i].value_len);
            o += fields[i].value_len;
        }
        req->out_len = (size_t)(o - out);
    }
    return (long)p;

request_line_cut:
    if (rl_limit <= end)
        return APIGW_H1_E_REQUEST_LINE_TOO_LONG;
out_of_window:
    return len >= max_head ? APIGW_H1_E_HEAD_TOO_LARGE : APIGW_H1_INCOMPLETE;
}

long apigw_h1_parse(apigw_h1_parser *p, const unsigned char *buf, size_t off, size_t len)
{
    if (off > len)
        return APIGW_H1_INCOMPLETE;
    return apigw_h1_parse_request(buf + off, len - off, &p->limits, &p->req, p->fields,
                                  p->out, p->out_cap);
}

int apigw_h1_error_status(long code)
{
    switch (code) {
    case APIGW_H1_INCOMPLETE:
        return 0;
    case APIGW_H1_E_VERSION_NOT_SUPPORTED:
        return 505;
    case APIGW_H1_E_REQUEST_LINE_TOO_LONG:
        return 414;
    case APIGW_H1_E_HEAD_TOO_LARGE:
    case APIGW_H1_E_TOO_MANY_FIELDS:
        return 431;
    case APIGW_H1_E_UNSUPPORTED_TRANSFER_CODING:
        return 501;
    default:
        return (code < 0 && code >= APIGW_H1_E_LAST) ? 400 : 0;
    }
}

const char *apigw_h1_error_name(long code)
{
    static const char *const NAMES[] = {
        "incomplete", "bare-cr", "bare-lf", "bad-method", "bad-target",
        "bad-request-line", "bad-version", "version-not-supported",
        "request-line-too-long", "head-too-large", "too-many-fields", "obs-fold",
        "bad-field-name", "ws-before-colon", "bad-field-value", "bad-content-length",
        "duplicate-content-length", "bad-transfer-encoding",
        "unsupported-transfer-coding", "te-with-content-length", "te-on-http10",
        "missing-host", "duplicate-host", "bad-host", "bad-connection",
        "connection-names-framing",
    };
    if (code >= 0 || code < APIGW_H1_E_LAST)
        return "?";
    return NAMES[-code - 1];
}
