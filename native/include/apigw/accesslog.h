/* apigw/accesslog.h - one JSON access-log line (apigw_core/runtime/accesslog.py).
 *
 * apigw_al_line writes the line that the pure-Python twin `format_entry` writes, byte for
 * byte, as UTF-8 ending in "\n": the fields that change per request here, then `rest`,
 * the fields that repeat (client, route, backend, outcome), which the caller escaped once
 * and keeps.  Strings are escaped as Python's json.encoder.encode_basestring does: '"'
 * and '\' get a backslash, \b \f \n \r \t their short forms, other bytes below 0x20
 * \u00XX; everything else is kept.  The request id is latin-1 (bytes off the wire: each
 * byte one code point, so bytes >= 0x80 become two UTF-8 bytes), NULL or empty is `null`;
 * the path is UTF-8, kept when valid (RFC 3629: no overlongs, surrogates or code points
 * above U+10FFFF), else APIGW_AL_E_FALLBACK is returned, because Python replaces bad
 * sequences with U+FFFD and that rule is the twin's to keep.  The second's text, the
 * trace id and `rest` are copied.  A duration below zero is `null`; one of 10^12 s or
 * more returns APIGW_AL_E_FALLBACK (no int64 overflow here).
 *
 * `sec` is the text of the second `start` (Unix time) is in; the milliseconds are
 * start's (a start below zero or beyond 2^53 returns APIGW_AL_E_FALLBACK).
 *
 * Writes from buf + off; returns the bytes written (> 0), APIGW_AL_E_SPACE when the
 * `cap - off` left are too few (nothing useful written), or APIGW_AL_E_FALLBACK.  No
 * allocation; never writes past buf + cap.
 */
#ifndef APIGW_ACCESSLOG_H
#define APIGW_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_AL_E_SPACE (-1)
#define APIGW_AL_E_FALLBACK (-2)

/* A batch buffer and what apigw_al_put keeps between lines: where the next line goes and
 * the text of the second the last line started in (sec < 0: none yet).  The caller owns
 * buf (cap bytes), reads off to take the lines and sets it back to 0. */
typedef struct {
    char *buf;
    size_t off, cap;
    int64_t sec;
    char sec_text[20];   /* "YYYY-MM-DDTHH:MM:SS" */
} apigw_al_batch;

long apigw_al_line(char *buf, size_t off, size_t cap,            /* writes at buf + off */
                   const char *sec, size_t sec_n, double start,    /* its ms: start's */
                   const char *rid, size_t rid_n,                  /* latin-1, nullable */
                   const char *trace, size_t trace_n,
                   const char *path, size_t path_n,                /* UTF-8 */
                   int64_t status, int64_t bytes_in, int64_t bytes_out,
                   double total, double backend, double client,    /* seconds */
                   const char *rest, size_t rest_n);               /* escaped already */

/* apigw_al_line for the gateway's request path, with fewer arguments to convert: the line
 * goes at b->buf + b->off (b->off advances by the bytes written, the result), the second's
 * text is made here (UTC, as time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)); a start
 * in the year 10000 or later is APIGW_AL_E_FALLBACK) and kept in b for the next line;
 * trace and rest are NUL-terminated (a Python bytes object is): the trace id and the
 * escaped tail hold no NUL.  SPACE and FALLBACK leave b->off as it was. */
long apigw_al_put(apigw_al_batch *b, double start, const char *rid, size_t rid_n,
                  const char *trace, const char *path, size_t path_n, int64_t status,
                  int64_t bytes_in, int64_t bytes_out, double total, double backend,
                  double client, const char *rest);

#ifdef __cplusplus
}
#endif

#endif
