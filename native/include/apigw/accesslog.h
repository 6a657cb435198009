/* apigw/accesslog.h - one JSON access-log line (apigw_core/runtime/accesslog.py).
 *
 * apigw_al_line writes the line that the pure-Python twin `format_entry` writes, byte for
 * byte, as UTF-8 ending in "\n".  Strings are escaped as Python's
 * json.encoder.encode_basestring does: '"' and '\' get a backslash, \b \f \n \r \t their
 * short forms, other bytes below 0x20 \u00XX; everything else is kept.  Three kinds of
 * string field:
 *   - latin-1 (bytes off the wire: method, host, user agent, request id): each
 *     byte is one code point, so bytes >= 0x80 become two UTF-8 bytes;
 *   - UTF-8 (the path, and strings the caller encoded: client ip, subscription id, last
 *     error): kept when valid
 *     (RFC 3629: no overlongs, surrogates or code points above U+10FFFF); an invalid one
 *     returns APIGW_AL_E_FALLBACK, because Python replaces bad sequences with U+FFFD and
 *     that rule is the twin's to keep;
 *   - raw (the second's time text, the trace id, and segments the caller escaped already:
 *     the protocol and the api/operation/product/backend/upstream group): copied.
 * A nullable field that is NULL or empty is written `null`.  A duration below zero is
 * `null`; one of 10^12 s or more returns APIGW_AL_E_FALLBACK (no int64 overflow here).
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
                   const char *sec, size_t sec_n, int ms,          /* raw; 0..999 */
                   const char *rid, size_t rid_n,                  /* latin-1, nullable */
                   const char *trace, size_t trace_n,              /* raw */
                   const char *ip, size_t ip_n,                    /* UTF-8, nullable */
                   const char *method, size_t method_n,            /* latin-1, nullable */
                   const char *host, size_t host_n,                /* latin-1, nullable */
                   const char *path, size_t path_n,                /* UTF-8 */
                   const char *proto, size_t proto_n,              /* raw */
                   int64_t status, int64_t bytes_in, int64_t bytes_out,
                   double total, double backend, double client,    /* seconds */
                   const char *group, size_t group_n,              /* raw */
                   const char *sub, size_t sub_n,                  /* UTF-8, nullable */
                   int64_t attempts,
                   const char *reason, size_t reason_n,            /* UTF-8, nullable */
                   const char *message, size_t message_n,          /* UTF-8, nullable */
                   const char *ua, size_t ua_n);                   /* latin-1, nullable */

#ifdef __cplusplus
}
#endif

#endif
