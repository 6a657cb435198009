/* fuzz_forward.c - libFuzzer target for apigw/http1_forward.h.
 *
 * Input: 2 bytes output capacity, 1 byte flags (bit 0 keep_xfcc, bit 1 an xfcc, bit 2 an
 * authority, bit 3 version "1.0"), 1 byte field count, 8 bytes id_next, 7 bytes of lengths
 * (method, target, client ip, scheme, backend, id prefix, xfcc/authority), then those
 * bytes back to back; the rest is the fields' NUL-joined name/value list.
 * Invariants:
 *   - the result is > 0 (and <= cap), APIGW_H1F_E_SPACE or APIGW_H1F_E_FALLBACK;
 *   - nothing is written outside [0, cap) (an exact-size heap block under ASan);
 *   - E_FALLBACK does not depend on cap; E_SPACE means a 64 KiB buffer gets a head, and
 *     a head written at cap is the same bytes as the one written with room to spare;
 *   - a head starts with the method and a space, ends with CRLF CRLF, and the request
 *     id's range lies inside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/http1_forward.h"
#include "require.h"

#define BIG 65536

struct in {
    const char *f[7];
    size_t n[7];
    const char *fields;
    size_t fields_n, num_fields;
    uint64_t id_next;
    unsigned flags;
};

static long call(char *buf, size_t cap, const struct in *a, int64_t out[4]) {
    int xfcc = a->flags & 2, auth = a->flags & 4;
    return apigw_h1_forward(buf, cap, a->f[0], a->n[0], a->f[1], a->n[1], a->fields,
                            a->fields_n, a->num_fields, a->f[2], a->n[2], a->f[3], a->n[3],
                            a->f[4], a->n[4], auth ? a->f[6] : NULL, auth ? a->n[6] : 0,
                            (a->flags & 8) ? "1.0" : "1.1", 3, a->f[5], a->n[5], a->id_next,
                            a->flags & 1, xfcc ? a->f[6] : NULL, xfcc ? a->n[6] : 0, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 19)
        return 0;
    struct in a;
    size_t cap = (size_t)data[0] | (size_t)data[1] << 8;
    a.flags = data[2];
    memcpy(&a.id_next, data + 4, 8);
    const char *p = (const char *)data + 19, *end = (const char *)data + size;
    for (int i = 0; i < 7; i++) {
        size_t want = data[12 + i];
        a.n[i] = want < (size_t)(end - p) ? want : (size_t)(end - p);
        a.f[i] = p;
        p += a.n[i];
    }
    a.fields = p;
    a.fields_n = (size_t)(end - p);
    size_t nuls = 0;
    for (size_t i = 0; i < a.fields_n; i++)
        nuls += a.fields[i] == '\0';
    /* num_fields pairs need 2 * num_fields - 1 NULs; any other count is the caller's bug,
     * but the function must still stay in bounds, so give it both kinds. */
    a.num_fields = (data[3] & 1) ? data[3] >> 1 : (nuls + 1) / 2;
    if (a.fields_n == 0 && !(data[3] & 1))
        a.num_fields = 0;

    char *buf = malloc(cap ? cap : 1), *big = malloc(BIG);
    REQUIRE(buf != NULL && big != NULL);
    int64_t out[4] = {0, 0, 0, 0}, out2[4] = {0, 0, 0, 0};
    long r = call(buf, cap, &a, out);
    long r2 = call(big, BIG, &a, out2);
    REQUIRE(r == APIGW_H1F_E_SPACE || r == APIGW_H1F_E_FALLBACK || (r > 0 && (size_t)r <= cap));
    REQUIRE(r2 == APIGW_H1F_E_FALLBACK || r2 > 0);
    REQUIRE((r == APIGW_H1F_E_FALLBACK) == (r2 == APIGW_H1F_E_FALLBACK));
    if (r > 0) {
        REQUIRE(r == r2 && memcmp(buf, big, (size_t)r) == 0);
        REQUIRE(memcmp(out, out2, sizeof out) == 0);
        REQUIRE((size_t)r > a.n[0] && memcmp(buf, a.f[0], a.n[0]) == 0 && buf[a.n[0]] == ' ');
        REQUIRE(r >= 4 && memcmp(buf + r - 4, "\r\n\r\n", 4) == 0);
        REQUIRE(out[0] >= 0 && out[1] >= 0 && out[0] + out[1] <= r);
    }
    free(buf);
    free(big);
    return 0;
}
