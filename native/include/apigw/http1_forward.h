/* apigw/http1_forward.h - the request head a gateway sends to an HTTP/1.1 backend.
 *
 * apigw_h1_forward does in one pass what apigw_core/gateway/forwarding.py's
 * forward_request_headers and then ClientConnection._send_request (protocol/http1/_client.py)
 * do in Python: drop the hop-by-hop fields, rewrite Host, X-Forwarded-*, Forwarded, Via,
 * X-Request-Id and X-Forwarded-Client-Cert, and serialise
 *     METHOD SP target SP "HTTP/1.1" CRLF *( name ": " value CRLF ) CRLF
 * into the caller's buffer.  The bytes are exactly the Python path's; the pure-Python twin
 * apigw_core/_purepy/http1_forward.py is this function line for line, and tests compare the
 * three on random inputs.
 *
 * `fields` holds the client's fields as Python's b"\0".join of name, value, name, value...
 * (the server parser's names are lower-case, its values OWS-trimmed): num_fields pairs,
 * 2 * num_fields - 1 NULs (empty for none).  The rules, in forwarding.py's words:
 *   - kept in order: every field but Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade,
 *     Proxy-Connection, Expect, any proxy-*, the fields Connection names (Content-Length
 *     and Host never) and the ones below;
 *   - then, in this order: host = backend; x-forwarded-for = the client's, ", " and
 *     client_ip; x-forwarded-proto = scheme; x-forwarded-host = the client's Host (or
 *     `authority` when given: an absolute-form target's) when not empty; forwarded = the
 *     client's, ", " and for=IP;proto=SCHEME[;host="HOST"] (an IP with ':' as "[IP]" in
 *     quotes, '\' and '"' of HOST escaped); via = the client's, ", " and "1.1 apigw" (or
 *     VERSION " apigw"); x-request-id = the client's first of 1..200 bytes, else
 *     id_prefix and id_next as 16 lower-case hex digits; x-forwarded-client-cert = the
 *     client's (joined by ",") when keep_xfcc, then "," and `xfcc` when given, when not
 *     empty; transfer-encoding: chunked when the client's head had one; te: trailers when
 *     a client TE value holds "trailers" (any case).  Repeated client fields are joined
 *     the way Python's `a if not a else a + ", " + b` joins them.
 * Anything the Python path would refuse (a method that is not a token, a target with a
 * CTL or SP, a value with a CTL, a Content-Length that is not digits or is repeated,
 * chunked with a Content-Length) or writes another way than this function (a name that
 * is not a lower-case token, more than 18 Content-Length digits, a NUL inside a field)
 * is APIGW_H1F_E_FALLBACK: the caller takes the Python path, which raises or writes it.
 * Input is checked before space, so the verdict on input does not depend on cap.
 *
 * out[0], out[1]: the x-request-id value's offset and length in buf; out[2]: the kept
 * Content-Length (-1: none); out[3]: APIGW_H1F_CHUNKED | APIGW_H1F_NEW_ID (id_next used).
 * Returns the bytes written (> 0), APIGW_H1F_E_SPACE or APIGW_H1F_E_FALLBACK; after
 * either error buf[0, cap) holds a partial head, not to be used (found by fuzz_forward).
 * No allocation; reads only the given ranges; never writes past buf + cap.
 */
#ifndef APIGW_HTTP1_FORWARD_H
#define APIGW_HTTP1_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_H1F_E_SPACE (-1)     /* cap too small */
#define APIGW_H1F_E_FALLBACK (-2)  /* not the C path's to write: see above */

#define APIGW_H1F_CHUNKED 1        /* out[3]: the request body goes chunked */
#define APIGW_H1F_NEW_ID 2         /* out[3]: the request id was made from id_next */

long apigw_h1_forward(char *buf, size_t cap,
                      const char *method, size_t method_n,
                      const char *target, size_t target_n,
                      const char *fields, size_t fields_n, size_t num_fields,
                      const char *client_ip, size_t client_ip_n,
                      const char *scheme, size_t scheme_n,
                      const char *backend, size_t backend_n,      /* the backend's authority */
                      const char *authority, size_t authority_n,  /* NULL: none */
                      const char *version, size_t version_n,      /* "1.1", "1.0": for Via */
                      const char *id_prefix, size_t id_prefix_n, uint64_t id_next,
                      int keep_xfcc, const char *xfcc, size_t xfcc_n,  /* xfcc NULL: none */
                      int64_t out[4]);

#ifdef __cplusplus
}
#endif

#endif
