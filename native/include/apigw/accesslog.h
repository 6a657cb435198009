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
 * Returns the bytes written (> 0), APIGW_AL_E_SPACE when `cap` is too small (nothing
 * useful written), or APIGW_AL_E_FALLBACK.  No allocation; never writes past out + cap.
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

long apigw_al_line(char *out, size_t cap,
                   const char *sec, size_t sec_n, int ms,          /* 0..999 */
                   const char *rid, size_t rid_n,                  /* latin-1, nullable */
                   const char *trace, size_t trace_n,
                   const char *path, size_t path_n,                /* UTF-8 */
                   int64_t status, int64_t bytes_in, int64_t bytes_out,
                   double total, double backend, double client,    /* seconds */
                   const char *rest, size_t rest_n);               /* escaped already */

#ifdef __cplusplus
}
#endif

#endif
