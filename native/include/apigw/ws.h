/* apigw/ws.h - WebSocket payload work of the relay: masking and UTF-8 checking (RFC 6455).
 *
 * Masking (§5.3): byte i of a payload is XORed with key[(phase + i) & 3], where `phase` is
 * how many payload bytes of the frame came before this piece (mod 4): a frame cut by reads
 * or relayed in pieces is masked piece by piece with the same key.
 *
 * UTF-8 (§8.1, RFC 3629): a text message is checked piece by piece with a state carried
 * between pieces (and frames); a piece may end inside a code point.  Overlong forms,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF are rejected as soon as the
 * byte that rules them out arrives (so a bad message fails fast, as Autobahn 6.4 wants).
 * The state is 0 between code points; otherwise
 *     need | lo << 8 | hi << 16
 * with `need` continuation bytes still to come, the next one in lo..hi.  The pure-Python
 * twin (apigw_core/_purepy/ws.py) computes the same states; keep the two in step.
 *
 * Nothing here allocates; every function reads `len` bytes of `src` and writes at most
 * `len` bytes of `dst` (which may be `src`).
 */
#ifndef APIGW_WS_H
#define APIGW_WS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_WS_UTF8_INVALID (-1)

/* dst = src masked with `key` from `phase`; returns the phase after it ((phase+len)&3). */
unsigned apigw_ws_mask(const unsigned char *src, size_t len, unsigned char *dst,
                       const unsigned char key[4], unsigned phase);

/* Checks src (XOR `key` from `phase` when key is not NULL: a masked piece is checked
 * without being unmasked anywhere) as the continuation of a text message in `state`.
 * `final`: the message ends with this piece, so no code point may be left open.
 * Returns the new state (>= 0) or APIGW_WS_UTF8_INVALID. */
long apigw_ws_utf8(uint32_t state, const unsigned char *src, size_t len,
                   const unsigned char *key, unsigned phase, int final);

/* Both in one pass: checks src ^ vkey as apigw_ws_utf8 does and writes dst = src ^ okey
 * (vkey and okey both from `phase`; vkey may be NULL for unmasked input).  Re-keying a
 * client's text frame for the backend is okey = client key ^ new key.  On
 * APIGW_WS_UTF8_INVALID, dst holds an unspecified prefix. */
long apigw_ws_mask_utf8(uint32_t state, const unsigned char *src, size_t len,
                        unsigned char *dst, const unsigned char *vkey,
                        const unsigned char okey[4], unsigned phase, int final);

#ifdef __cplusplus
}
#endif

#endif
