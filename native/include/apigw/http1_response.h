/* apigw/http1_response.h - strict HTTP/1.1 response-head parser for the backend side.
 *
 * The client connection (apigw_core/protocol/http1/_client.py) reads a backend's response
 * head with this: status line and field lines, with the same strictness it had in Python
 * (see that module's docstring for why: response smuggling on pooled connections).  Like
 * apigw_h1_parse_request it is stateless, never allocates, never reads outside
 * buf[off, len) and is re-run from `off` when more bytes arrive.
 *
 * The rules, in the order they are checked (the first broken one wins; the pure-Python
 * twin apigw_core/_purepy/http1_response.py checks them in the same order):
 *   1. find the first CRLF CRLF that ends within max_head bytes of `off`; when there is
 *      none: the bytes so far must be a prefix of "HTTP/", then no LF may lack its CR
 *      (anywhere in the data), then fewer than max_head bytes -> INCOMPLETE;
 *   2. status line: "HTTP/" DIGIT "." DIGIT SP 3DIGIT [ SP reason ] with reason made of
 *      HTAB / SP / VCHAR / obs-text; then major version 1; then status >= 100;
 *   3. each field line in order, whole: name ":" OWS value OWS (a failing line is named by
 *      its first matching fault: obs-fold, bare CR, bare LF, missing colon, whitespace
 *      before the colon, bad name, bad value); then at most max_fields lines;
 *   4. for a final (>= 200) response only, fields in order: Content-Length 1*18DIGIT and
 *      not repeated; Transfer-Encoding elements each exactly one "chunked" over the whole
 *      head; then TE with Content-Length, then TE on HTTP/1.0.
 * Minor versions 1..9 read as 1.1.  Connection "close" / "keep-alive" set flags.
 */
#ifndef APIGW_HTTP1_RESPONSE_H
#define APIGW_HTTP1_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "apigw/http1.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    APIGW_H1R_INCOMPLETE = -1,
    APIGW_H1R_E_NOT_HTTP = -2,            /* does not start with HTTP/ */
    APIGW_H1R_E_BARE_LF = -3,             /* LF without CR before the head's end */
    APIGW_H1R_E_HEAD_TOO_LARGE = -4,
    APIGW_H1R_E_STATUS_LINE = -5,
    APIGW_H1R_E_MAJOR_VERSION = -6,       /* HTTP major version is not 1 */
    APIGW_H1R_E_STATUS_BELOW_100 = -7,
    APIGW_H1R_E_OBS_FOLD = -8,            /* field line faults, -8 .. -14 */
    APIGW_H1R_E_FIELD_BARE_CR = -9,
    APIGW_H1R_E_FIELD_BARE_LF = -10,
    APIGW_H1R_E_MISSING_COLON = -11,
    APIGW_H1R_E_WS_BEFORE_COLON = -12,
    APIGW_H1R_E_BAD_FIELD_NAME = -13,
    APIGW_H1R_E_BAD_FIELD_VALUE = -14,
    APIGW_H1R_E_TOO_MANY_FIELDS = -15,
    APIGW_H1R_E_REPEATED_CONTENT_LENGTH = -16,
    APIGW_H1R_E_BAD_CONTENT_LENGTH = -17, /* not 1*DIGIT or more than 18 digits */
    APIGW_H1R_E_BAD_TRANSFER_ENCODING = -18, /* anything but one "chunked" */
    APIGW_H1R_E_TE_WITH_CONTENT_LENGTH = -19,
    APIGW_H1R_E_TE_ON_HTTP10 = -20,
    APIGW_H1R_E_LAST = -20
};

/* flags: APIGW_H1_F_CHUNKED, APIGW_H1_F_CONN_CLOSE, APIGW_H1_F_CONN_KEEP_ALIVE (http1.h),
 * set for final responses only. */
typedef struct {
    uint32_t max_head;          /* in: bytes, final CRLF CRLF counted */
    uint32_t max_fields;        /* in: field lines */
    apigw_h1_field *fields;     /* in: max_fields slots (at least 1) */
    unsigned char *out;         /* in, optional: "reason\0name\0value\0..." with names
                                   lower-cased, values OWS-trimmed */
    size_t out_cap;             /* in: >= max_head is always enough */
    int32_t status;             /* out */
    int32_t version_minor;      /* out: 0 or 1 */
    uint32_t reason_off, reason_len;  /* out: from buf + off */
    uint32_t num_fields;        /* out */
    uint32_t flags;             /* out */
    int64_t content_length;     /* out: -1 when absent (always -1 for 1xx) */
    size_t out_len;             /* out: bytes written to out */
} apigw_h1_response;

/* Parse one response head from buf[off, len).  Returns the bytes consumed (> 0), or
 * APIGW_H1R_INCOMPLETE, or an APIGW_H1R_E_* code; the out fields of `r` are garbage
 * unless it returns > 0. */
long apigw_h1_parse_response(apigw_h1_response *r, const unsigned char *buf, size_t off,
                             size_t len);

#ifdef __cplusplus
}
#endif
#endif
