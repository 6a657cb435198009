/* http1_forward.c - the backend request head in one call; see apigw/http1_forward.h.
 *
 * Strategy.  One look over the client's fields checks them and notes the facts the
 * rewrite needs (Host, the first usable X-Request-Id, TE, Transfer-Encoding, a
 * Content-Length, whether Connection names fields, which joined fields are there); a
 * second writes the kept fields; each joined field (X-Forwarded-For, Forwarded, Via,
 * X-Forwarded-Client-Cert) present is gathered by one more look.  Every byte goes through
 * one writer that counts what it would write, writes only what fits, and checks each
 * output value as Python's FIELD_VALUE_RE does (VCHAR / obs-text, SP and HTAB inside):
 * so a verdict on the input never depends on cap, and nothing is read twice per byte
 * but the joined fields. */
#include "apigw/http1_forward.h"

#include <string.h>

#define LIT(s) s, sizeof(s) - 1

/* tchar (RFC 9110 §5.6.2) */
static int tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

static int vch(unsigned char c) { return (c >= 0x21 && c != 0x7f); }

typedef struct {
    char *buf;
    size_t cap, len;
    int bad;              /* a check failed: the answer is E_FALLBACK */
    /* the value being written: its length, first and last byte, a CTL seen */
    size_t vlen;
    unsigned char first, last;
} writer;

static void put(writer *w, const char *s, size_t n) {
    if (w->len < w->cap) {
        size_t room = w->cap - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

/* a piece of a field value: written and checked */
static void val(writer *w, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (!n)
        return;
    for (size_t i = 0; i < n; i++)
        if (!vch(u[i]) && u[i] != ' ' && u[i] != '\t')
            w->bad = 1;
    if (!w->vlen)
        w->first = u[0];
    w->last = u[n - 1];
    w->vlen += n;
    put(w, s, n);
}

static void begin(writer *w, const char *name, size_t n) {
    put(w, name, n);
    put(w, LIT(": "));
    w->vlen = 0;
}

static void end(writer *w) {
    if (w->vlen && (!vch(w->first) || !vch(w->last)))
        w->bad = 1;
    put(w, LIT("\r\n"));
}

/* The client's fields: name, value, name, value ... separated by NUL. */
typedef struct {
    const char *p, *e;
} cursor;

/* The next piece; the last one ends at the block's end. */
static const char *piece(cursor *c, size_t *n) {
    const char *s = c->p;
    const char *z = memchr(s, 0, (size_t)(c->e - s));
    if (z == NULL) {
        *n = (size_t)(c->e - s);
        c->p = c->e;
    } else {
        *n = (size_t)(z - s);
        c->p = z + 1;
    }
    return s;
}

static int eq(const char *s, size_t n, const char *lit, size_t lit_n) {
    return n == lit_n && memcmp(s, lit, n) == 0;
}

/* `name` (lower-case) is one of the comma-separated, OWS-trimmed, case-folded tokens of
 * some connection field: Python's _connection_tokens. */
static int named(const char *fields, size_t fields_n, size_t num, const char *name,
                 size_t name_n) {
    cursor c = {fields, fields + fields_n};
    for (size_t i = 0; i < num; i++) {
        size_t nn, vn;
        const char *n = piece(&c, &nn), *v = piece(&c, &vn);
        if (!eq(n, nn, LIT("connection")))
            continue;
        size_t a = 0;
        while (a <= vn) {
            size_t b = a;
            while (b < vn && v[b] != ',')
                b++;
            size_t s = a, t = b;
            while (s < t && (v[s] == ' ' || v[s] == '\t'))
                s++;
            while (t > s && (v[t - 1] == ' ' || v[t - 1] == '\t'))
                t--;
            if (t - s == name_n) {
                size_t k = 0;
                while (k < name_n) {
                    unsigned char ch = (unsigned char)v[s + k];
                    if (ch >= 'A' && ch <= 'Z')
                        ch = (unsigned char)(ch + 32);
                    if (ch != (unsigned char)name[k])
                        break;
                    k++;
                }
                if (k == name_n)
                    return 1;
            }
            a = b + 1;
        }
    }
    return 0;
}

/* Python's `acc = v if not acc else acc + sep + v` over the fields called `name`, written
 * as one value's pieces; returns the joined length (0: nothing written). */
static size_t joined(writer *w, const char *fields, size_t fields_n, size_t num,
                     const char *name, size_t name_n, const char *sep, size_t sep_n) {
    cursor c = {fields, fields + fields_n};
    size_t len = 0;
    for (size_t i = 0; i < num; i++) {
        size_t nn, vn;
        const char *n = piece(&c, &nn), *v = piece(&c, &vn);
        if (!eq(n, nn, name, name_n))
            continue;
        if (len) {
            val(w, sep, sep_n);
            len += sep_n;
        }
        val(w, v, vn);
        len += vn;
    }
    return len;
}

static int has_trailers(const char *v, size_t n) {
    for (size_t i = 0; i + 8 <= n; i++) {
        size_t k = 0;
        while (k < 8) {
            unsigned char ch = (unsigned char)v[i + k];
            if (ch >= 'A' && ch <= 'Z')
                ch = (unsigned char)(ch + 32);
            if (ch != (unsigned char)"trailers"[k])
                break;
            k++;
        }
        if (k == 8)
            return 1;
    }
    return 0;
}

long apigw_h1_forward(char *buf, size_t cap, const char *method, size_t method_n,
                      const char *target, size_t target_n, const char *fields,
                      size_t fields_n, size_t num_fields, const char *client_ip,
                      size_t client_ip_n, const char *scheme, size_t scheme_n,
                      const char *backend, size_t backend_n, const char *authority,
                      size_t authority_n, const char *version, size_t version_n,
                      const char *id_prefix, size_t id_prefix_n, uint64_t id_next,
                      int keep_xfcc, const char *xfcc, size_t xfcc_n, int64_t out[4]) {
    writer w = {buf, cap, 0, 0, 0, 0, 0};
    const char *host = NULL, *rid = NULL;
    size_t host_n = 0, rid_n = 0;
    size_t n_xff = 0, n_fwd = 0, n_via = 0, n_xfcc = 0, n_conn = 0, n_clen = 0;
    int chunked = 0, te_trailers = 0;
    int64_t clen = -1;

    /* 1. the block's shape (2 * num_fields - 1 NULs), the names and values, the facts */
    size_t nuls = 0;
    for (const char *z = fields, *e = fields + fields_n;
         z < e && (z = memchr(z, 0, (size_t)(e - z))) != NULL; z++)
        nuls++;
    if (num_fields == 0 ? fields_n != 0 : nuls != 2 * num_fields - 1)
        return APIGW_H1F_E_FALLBACK;
    cursor c = {fields, fields + fields_n};
    for (size_t i = 0; i < num_fields; i++) {
        size_t nn, vn;
        const char *n = piece(&c, &nn), *v = piece(&c, &vn);
        if (!nn)
            return APIGW_H1F_E_FALLBACK;
        for (size_t k = 0; k < nn; k++) {
            unsigned char ch = (unsigned char)n[k];
            if (!tchar(ch) || (ch >= 'A' && ch <= 'Z'))
                return APIGW_H1F_E_FALLBACK;
        }
        for (size_t k = 0; k < vn; k++) {
            unsigned char ch = (unsigned char)v[k];
            if (!vch(ch) && ch != ' ' && ch != '\t')
                return APIGW_H1F_E_FALLBACK;
        }
        if (vn && (!vch((unsigned char)v[0]) || !vch((unsigned char)v[vn - 1])))
            return APIGW_H1F_E_FALLBACK;
        switch (n[0]) {
        case 'h':
            if (eq(n, nn, LIT("host"))) {
                host = v;
                host_n = vn;
            }
            break;
        case 'x':
            if (eq(n, nn, LIT("x-forwarded-for")))
                n_xff++;
            else if (eq(n, nn, LIT("x-request-id"))) {
                if (rid == NULL && vn > 0 && vn <= 200) {
                    rid = v;
                    rid_n = vn;
                }
            } else if (eq(n, nn, LIT("x-forwarded-client-cert")))
                n_xfcc++;
            break;
        case 'f':
            if (eq(n, nn, LIT("forwarded")))
                n_fwd++;
            break;
        case 'v':
            if (eq(n, nn, LIT("via")))
                n_via++;
            break;
        case 't':
            if (eq(n, nn, LIT("transfer-encoding")))
                chunked = 1;
            else if (eq(n, nn, LIT("te")) && has_trailers(v, vn))
                te_trailers = 1;
            break;
        case 'c':
            if (eq(n, nn, LIT("connection")))
                n_conn++;
            else if (eq(n, nn, LIT("content-length"))) {
                /* kept (Connection may not name it): _send_request's rules */
                if (++n_clen > 1 || vn == 0 || vn > 18)
                    return APIGW_H1F_E_FALLBACK;
                clen = 0;
                for (size_t k = 0; k < vn; k++) {
                    if (v[k] < '0' || v[k] > '9')
                        return APIGW_H1F_E_FALLBACK;
                    clen = clen * 10 + (v[k] - '0');
                }
            }
            break;
        default:
            break;
        }
    }
    if (chunked && clen >= 0)
        return APIGW_H1F_E_FALLBACK;

    /* 2. the request line */
    if (!method_n || !target_n)
        return APIGW_H1F_E_FALLBACK;
    for (size_t k = 0; k < method_n; k++)
        if (!tchar((unsigned char)method[k]))
            return APIGW_H1F_E_FALLBACK;
    for (size_t k = 0; k < target_n; k++)
        if (!vch((unsigned char)target[k]))
            return APIGW_H1F_E_FALLBACK;
    put(&w, method, method_n);
    put(&w, LIT(" "));
    put(&w, target, target_n);
    put(&w, LIT(" HTTP/1.1\r\n"));

    /* 3. the kept fields, in order */
    c.p = fields;
    for (size_t i = 0; i < num_fields; i++) {
        size_t nn, vn;
        const char *n = piece(&c, &nn), *v = piece(&c, &vn);
        int drop = 0;
        switch (n[0]) {
        case 'c':
            drop = eq(n, nn, LIT("connection"));
            break;
        case 'e':
            drop = eq(n, nn, LIT("expect"));
            break;
        case 'f':
            drop = eq(n, nn, LIT("forwarded"));
            break;
        case 'h':
            drop = eq(n, nn, LIT("host"));
            break;
        case 'k':
            drop = eq(n, nn, LIT("keep-alive"));
            break;
        case 'p':
            drop = nn >= 6 && memcmp(n, "proxy-", 6) == 0;
            break;
        case 't':
            drop = eq(n, nn, LIT("te")) || eq(n, nn, LIT("transfer-encoding"));
            break;
        case 'u':
            drop = eq(n, nn, LIT("upgrade"));
            break;
        case 'v':
            drop = eq(n, nn, LIT("via"));
            break;
        case 'x':
            drop = eq(n, nn, LIT("x-forwarded-for")) || eq(n, nn, LIT("x-request-id"))
                || eq(n, nn, LIT("x-forwarded-proto")) || eq(n, nn, LIT("x-forwarded-host"))
                || eq(n, nn, LIT("x-forwarded-client-cert"));
            break;
        default:
            break;
        }
        if (!drop && n_conn && !eq(n, nn, LIT("content-length")))
            drop = named(fields, fields_n, num_fields, n, nn);
        if (drop)
            continue;
        put(&w, n, nn);
        put(&w, LIT(": "));
        put(&w, v, vn);
        put(&w, LIT("\r\n"));
    }

    /* 4. the gateway's own */
    if (authority != NULL) {
        host = authority;
        host_n = authority_n;
    }
    int v6 = client_ip_n && memchr(client_ip, ':', client_ip_n) != NULL;
    begin(&w, LIT("host"));
    val(&w, backend, backend_n);
    end(&w);
    begin(&w, LIT("x-forwarded-for"));
    if (n_xff && joined(&w, fields, fields_n, num_fields, LIT("x-forwarded-for"), LIT(", ")))
        val(&w, LIT(", "));
    val(&w, client_ip, client_ip_n);
    end(&w);
    begin(&w, LIT("x-forwarded-proto"));
    val(&w, scheme, scheme_n);
    end(&w);
    if (host_n) {
        begin(&w, LIT("x-forwarded-host"));
        val(&w, host, host_n);
        end(&w);
    }
    begin(&w, LIT("forwarded"));
    if (n_fwd && joined(&w, fields, fields_n, num_fields, LIT("forwarded"), LIT(", ")))
        val(&w, LIT(", "));
    val(&w, LIT("for="));
    if (v6)
        val(&w, LIT("\"["));
    val(&w, client_ip, client_ip_n);
    if (v6)
        val(&w, LIT("]\""));
    val(&w, LIT(";proto="));
    val(&w, scheme, scheme_n);
    if (host_n) {
        val(&w, LIT(";host=\""));
        size_t a = 0;
        for (size_t k = 0; k < host_n; k++) {
            if (host[k] == '\\' || host[k] == '"') {
                val(&w, host + a, k - a);
                val(&w, LIT("\\"));
                a = k;
            }
        }
        val(&w, host + a, host_n - a);
        val(&w, LIT("\""));
    }
    end(&w);
    begin(&w, LIT("via"));
    if (n_via && joined(&w, fields, fields_n, num_fields, LIT("via"), LIT(", ")))
        val(&w, LIT(", "));
    if (eq(version, version_n, LIT("1.1")))
        val(&w, LIT("1.1 apigw"));
    else {
        val(&w, version, version_n);
        val(&w, LIT(" apigw"));
    }
    end(&w);
    begin(&w, LIT("x-request-id"));
    out[0] = (int64_t)w.len;
    int new_id = rid == NULL;
    if (new_id) {
        char hex[16];
        uint64_t x = id_next;
        for (int k = 15; k >= 0; k--, x >>= 4)
            hex[k] = "0123456789abcdef"[x & 15];
        val(&w, id_prefix, id_prefix_n);
        val(&w, hex, 16);
    } else {
        val(&w, rid, rid_n);
    }
    out[1] = (int64_t)(w.len - (size_t)out[0]);
    end(&w);
    size_t mark = w.len, vmark;
    begin(&w, LIT("x-forwarded-client-cert"));
    vmark = w.len;
    size_t xn = 0;
    if (n_xfcc && keep_xfcc)
        xn = joined(&w, fields, fields_n, num_fields, LIT("x-forwarded-client-cert"),
                    LIT(","));
    if (xfcc != NULL) {
        if (xn)
            val(&w, LIT(","));
        val(&w, xfcc, xfcc_n);
    }
    if (w.len == vmark)
        w.len = mark;   /* empty: no field (nothing past mark was written) */
    else
        end(&w);
    if (chunked) {
        put(&w, LIT("transfer-encoding: chunked\r\n"));
    }
    if (te_trailers)
        put(&w, LIT("te: trailers\r\n"));
    put(&w, LIT("\r\n"));

    if (w.bad)
        return APIGW_H1F_E_FALLBACK;
    if (w.len > cap || w.len > (size_t)0x7fffffff)
        return APIGW_H1F_E_SPACE;
    out[2] = clen;
    out[3] = (chunked ? APIGW_H1F_CHUNKED : 0) | (new_id ? APIGW_H1F_NEW_ID : 0);
    return (long)w.len;
}
