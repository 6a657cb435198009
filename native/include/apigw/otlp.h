/* apigw/otlp.h - one OTLP span, protobuf-encoded (apigw_core/runtime/otel.py's spans).
 *
 * apigw_otlp_span writes the bytes that the pure-Python twin `otlp.span_entry` writes:
 * one ScopeSpans.spans field (tag 0x12, the body's length as a varint, the body), whose
 * body is trace.proto's Span in field order:
 *     0a 10 <trace id, 16 bytes>   12 08 <span id, 8 bytes>   [22 08 <parent id, 8 bytes>]
 *     <name>   30 <kind>   39 <start ns, fixed64 LE>   41 <end ns, fixed64 LE>
 *     <attrs>   <tail>
 * The ids come as hex (lowercase or uppercase; 32, 16 and 16 digits; parent_n 0: the span
 * has no parent).  `name` is the Span.name field already encoded (tag, length, bytes),
 * `attrs` its attribute fields and `tail` its events and status: all three are copied as
 * given.  `kind` is Span.kind, below 128 (one varint byte).
 *
 * Times are seconds on the caller's clock plus `off_s`, the offset to Unix time; the
 * nanoseconds are what Python's `int(t * 1e9 + off_s * 1e9)` gives: off_ns = off_s * 1e9,
 * then t * 1e9 + off_ns as doubles (no fused multiply-add: the build passes
 * -ffp-contract=off), truncated.  A sum that is NaN, below zero or 2^64 or more is
 * APIGW_OTLP_E_INPUT, and so is a bad id or a kind of 128 or more; input is checked before
 * space, so the result for bad input does not depend on cap.
 *
 * Writes from buf + off; returns the bytes written (> 0), APIGW_OTLP_E_SPACE when the
 * `cap - off` left are too few (then nothing is written at all), or APIGW_OTLP_E_INPUT.
 * No allocation; never writes past buf + cap.
 */
#ifndef APIGW_OTLP_H
#define APIGW_OTLP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_OTLP_E_SPACE (-1)   /* cap - off too small: nothing useful written */
#define APIGW_OTLP_E_INPUT (-2)   /* an id not lowercase/uppercase hex of its length, or a time out of range */

long apigw_otlp_span(char *buf, size_t off, size_t cap,                /* writes at buf + off */
                     const char *trace_hex, size_t trace_n,    /* 32 hex digits */
                     const char *span_hex, size_t span_n,      /* 16 hex digits */
                     const char *parent_hex, size_t parent_n,  /* 16 hex digits; parent_n 0: no parent */
                     const char *name, size_t name_n,          /* Span.name, already a field (tag, len, bytes) */
                     unsigned kind,                            /* Span.kind, < 128 */
                     double start, double end, double off_s,   /* seconds; ns = (uint64)(t * 1e9 + off_s * 1e9) */
                     const char *attrs, size_t attrs_n,        /* encoded fields, copied as is */
                     const char *tail, size_t tail_n);         /* encoded fields (events, status), copied as is */

/* apigw_otlp_pair writes a request's SERVER span (kind 2, from start to end, parent
 * `parent`) and its one CLIENT span (kind 3, id `cspan`, from t0 to t1, its parent the
 * SERVER span) back to back: the two apigw_otlp_span calls the twin `otlp.pair_into` makes,
 * with fewer arguments to convert.  `parts` holds the six fields that repeat from request
 * to request, each a 4-byte little-endian length and its bytes: the SERVER span's name,
 * attrs and tail, then the CLIENT span's (otlp.pair_parts builds it); parts that do not
 * split into exactly six are APIGW_OTLP_E_INPUT.  The ids are NUL-terminated hex (a
 * Python bytes object is; parent "" for none).  Both spans' input is checked before
 * space; then the result is the bytes of both (> 0) or APIGW_OTLP_E_SPACE. */
long apigw_otlp_pair(char *buf, size_t off, size_t cap, const char *parts, size_t parts_n,
                     const char *trace, const char *span, const char *parent,
                     const char *cspan, double start, double end, double t0, double t1,
                     double off_s);

#ifdef __cplusplus
}
#endif

#endif
