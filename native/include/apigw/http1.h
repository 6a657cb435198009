/* apigw/http1.h - strict HTTP/1.1 request-head parser (RFC 9112, RFC 9110).
 *
 * One stateless function in picohttpparser's shape: the caller passes the bytes it has,
 * the parser either finds a whole, valid request head in them or says "incomplete" or
 * names the first rule the bytes break.  It never allocates and never reads outside
 * buf[0, len).  It is re-run from the start when more bytes arrive (heads are small).
 *
 * The same rules, in the same order, are implemented in Python by
 * apigw_core/_purepy/http1_head.py; tests compare both on random inputs, so any change
 * here must be made there too.
 *
 * Scan order (the first broken rule wins, so the order is part of the contract):
 *   1. empty lines (CRLF) before the request line are skipped;
 *   2. the request line, left to right: method token, SP, target, SP, "HTTP/" DIGIT "."
 *      DIGIT, CRLF; a wrong major version is reported only once the line is complete;
 *   3. each field line, left to right: name token, ":", OWS, value, OWS, CRLF; when the
 *      line is complete its per-field framing rule runs (Content-Length, Transfer-Encoding,
 *      Host, Connection);
 *   4. after the empty line that ends the head: Transfer-Encoding rules, then Host.
 * Limits cut the scan: the request line is scanned at most max_request_line + 2 bytes
 * (content + CRLF) and the head at most max_head bytes; running out of a cut window is
 * the limit's error at once, running out of data is APIGW_H1_INCOMPLETE.
 */
#ifndef APIGW_HTTP1_H
#define APIGW_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes besides "bytes consumed" (> 0).  Keep in step with _purepy/http1_head.py. */
enum {
    APIGW_H1_INCOMPLETE = -1,               /* need more bytes */
    APIGW_H1_E_BARE_CR = -2,                /* 400: CR not followed by LF */
    APIGW_H1_E_BARE_LF = -3,                /* 400: LF not preceded by CR */
    APIGW_H1_E_BAD_METHOD = -4,             /* 400: method empty or not a token */
    APIGW_H1_E_BAD_TARGET = -5,             /* 400: target empty or has CTL/DEL */
    APIGW_H1_E_BAD_REQUEST_LINE = -6,       /* 400: line ends before the version */
    APIGW_H1_E_BAD_VERSION = -7,            /* 400: not "HTTP/" DIGIT "." DIGIT */
    APIGW_H1_E_VERSION_NOT_SUPPORTED = -8,  /* 505: major version other than 1 */
    APIGW_H1_E_REQUEST_LINE_TOO_LONG = -9,  /* 414 */
    APIGW_H1_E_HEAD_TOO_LARGE = -10,        /* 431 */
    APIGW_H1_E_TOO_MANY_FIELDS = -11,       /* 431 */
    APIGW_H1_E_OBS_FOLD = -12,              /* 400: field line starts with SP/HTAB */
    APIGW_H1_E_BAD_FIELD_NAME = -13,        /* 400: name empty or not a token */
    APIGW_H1_E_WS_BEFORE_COLON = -14,       /* 400 */
    APIGW_H1_E_BAD_FIELD_VALUE = -15,       /* 400: CTL (but HTAB) or DEL in value */
    APIGW_H1_E_BAD_CONTENT_LENGTH = -16,    /* 400: not 1*DIGIT, or > 2^63-1 */
    APIGW_H1_E_DUPLICATE_CONTENT_LENGTH = -17, /* 400 */
    APIGW_H1_E_BAD_TRANSFER_ENCODING = -18, /* 400: empty/non-token element, chunked
                                                  absent, not last or repeated */
    APIGW_H1_E_UNSUPPORTED_TRANSFER_CODING = -19, /* 501: codings before chunked */
    APIGW_H1_E_TE_WITH_CONTENT_LENGTH = -20,  /* 400 */
    APIGW_H1_E_TE_ON_HTTP10 = -21,          /* 400 */
    APIGW_H1_E_MISSING_HOST = -22,          /* 400: HTTP/1.1 without Host */
    APIGW_H1_E_DUPLICATE_HOST = -23,        /* 400 */
    APIGW_H1_E_BAD_HOST = -24,              /* 400: not a valid uri-host [":" port] */
    APIGW_H1_E_BAD_CONNECTION = -25,        /* 400: non-token element (empty ones are
                                               skipped, RFC 9110 §5.6.1) */
    APIGW_H1_E_CONNECTION_NAMES_FRAMING = -26, /* 400: names content-length,
                                                  transfer-encoding or host */
    APIGW_H1_E_LAST = -26
};

/* Facts the framing layer needs, so Python never re-reads the fields for them. */
enum {
    APIGW_H1_F_CHUNKED = 1u << 0,          /* Transfer-Encoding: ..., chunked */
    APIGW_H1_F_CONN_CLOSE = 1u << 1,       /* Connection has "close" */
    APIGW_H1_F_CONN_KEEP_ALIVE = 1u << 2,  /* Connection has "keep-alive" */
    APIGW_H1_F_CONN_UPGRADE = 1u << 3,     /* Connection has "upgrade" */
    APIGW_H1_F_UPGRADE = 1u << 4,          /* an Upgrade field is present */
    APIGW_H1_F_EXPECT_CONTINUE = 1u << 5   /* Expect: 100-continue */
};

typedef struct {
    uint32_t max_request_line; /* bytes, CRLF not counted; 414 past it (default 8192) */
    uint32_t max_head;         /* bytes, leading empty lines and final CRLF counted; 431 */
    uint32_t max_fields;       /* field lines; 431 past it (default 100) */
} apigw_h1_limits;

/* One field line: offsets into the caller's buffer (value has OWS trimmed). */
typedef struct {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} apigw_h1_field;

typedef struct {
    uint32_t method_off, method_len;
    uint32_t target_off, target_len;
    int32_t version_minor;     /* 0 or 1 (HTTP/1.2..1.9 are read as 1.1) */
    uint32_t num_fields;
    uint32_t flags;            /* APIGW_H1_F_* */
    int64_t content_length;    /* -1 when there is no Content-Length field */
    size_t out_len;            /* bytes written to `out` (0 when out is NULL) */
} apigw_h1_request;

/* Parse one request head from buf[0, len).
 * fields: max_fields slots (limits->max_fields of them) filled on success.
 * out (optional, may be NULL): receives "method\0target\0name\0value\0name\0value..."
 *   with field names lower-cased and values trimmed, for callers that want one buffer
 *   to split once; out_cap must be >= the bytes consumed (max_head is always enough).
 * Returns the bytes consumed (> 0) when a whole valid head was found, else one of the
 * negative codes above.  `req`, `fields` and `out` hold garbage unless it returns > 0. */
long apigw_h1_parse_request(const unsigned char *buf, size_t len,
                            const apigw_h1_limits *limits, apigw_h1_request *req,
                            apigw_h1_field *fields, unsigned char *out, size_t out_cap);

/* The same call with its arguments in one struct, for bindings that parse many heads with
 * the same limits and slots (one pointer to convert per call instead of five); it parses
 * buf[off, len), e.g. the next pipelined request, and offsets in req/fields count from
 * buf + off.  Returns what apigw_h1_parse_request returns (0 < consumed <= len - off). */
typedef struct {
    apigw_h1_limits limits;
    apigw_h1_request req;
    apigw_h1_field *fields;    /* limits.max_fields slots */
    unsigned char *out;        /* optional, as above */
    size_t out_cap;
} apigw_h1_parser;

long apigw_h1_parse(apigw_h1_parser *p, const unsigned char *buf, size_t off, size_t len);

/* The HTTP status to answer a negative code with (0 for APIGW_H1_INCOMPLETE). */
int apigw_h1_error_status(long code);

/* A short, stable, lower-case name for a code ("bare-lf", ...); "?" when unknown. */
const char *apigw_h1_error_name(long code);

#ifdef __cplusplus
}
#endif
#endif
