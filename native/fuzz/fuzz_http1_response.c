/* fuzz_http1_response.c - libFuzzer target for apigw_h1_parse_response.
 *
 * Each input is copied into a heap buffer of exactly its size (so ASan sees any over-read)
 * and parsed under small and default limits, at offset 0 and at offset 1.  For any input
 * the answer is a code of the header or a parse whose reason and fields lie inside the
 * consumed bytes and whose `out` copy matches them; the head alone must parse the same and
 * one byte less must be INCOMPLETE.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/http1_response.h"
#include "require.h"

static const uint32_t LIMITS[][2] = {{48, 3}, {65536, 100}};

static long parse_copy(const uint8_t *data, size_t size, size_t off, const uint32_t *lim,
                       apigw_h1_response *r, apigw_h1_field *fields, unsigned char *out)
{
    unsigned char *buf = malloc(size ? size : 1);
    long rc;
    REQUIRE(buf != NULL);
    memcpy(buf, data, size);
    memset(r, 0, sizeof *r);
    r->max_head = lim[0];
    r->max_fields = lim[1];
    r->fields = fields;
    r->out = out;
    r->out_cap = lim[0];
    rc = apigw_h1_parse_response(r, buf, off, size);
    free(buf);
    return rc;
}

static void check_ok(const uint8_t *b, long rc, const apigw_h1_response *r,
                     const apigw_h1_field *f, const unsigned char *out)
{
    size_t o = 0;
    REQUIRE(r->status >= 100 && r->status <= 999);
    REQUIRE(r->version_minor == 0 || r->version_minor == 1);
    REQUIRE(r->content_length >= -1);
    REQUIRE((uint64_t)r->reason_off + r->reason_len <= (uint64_t)rc);
    REQUIRE(r->out_len <= (size_t)rc);
    REQUIRE(memcmp(out, b + r->reason_off, r->reason_len) == 0 && out[r->reason_len] == 0);
    o = r->reason_len + 1;
    for (uint32_t i = 0; i < r->num_fields; i++) {
        REQUIRE((uint64_t)f[i].name_off + f[i].name_len <= (uint64_t)rc);
        REQUIRE((uint64_t)f[i].value_off + f[i].value_len <= (uint64_t)rc);
        REQUIRE(f[i].name_len > 0);
        for (uint32_t k = 0; k < f[i].name_len; k++) {
            unsigned char c = b[f[i].name_off + k];
            REQUIRE(out[o++] == ((c >= 'A' && c <= 'Z') ? (c | 0x20) : c));
        }
        REQUIRE(out[o++] == 0);
        REQUIRE(memcmp(out + o, b + f[i].value_off, f[i].value_len) == 0);
        o += f[i].value_len;
        REQUIRE(out[o++] == 0);
    }
    REQUIRE(o == r->out_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t li = 0; li < sizeof LIMITS / sizeof LIMITS[0]; li++) {
        const uint32_t *lim = LIMITS[li];
        apigw_h1_field *fields = malloc(lim[1] * sizeof *fields);
        apigw_h1_field *fields2 = malloc(lim[1] * sizeof *fields2);
        unsigned char *out = malloc(lim[0]), *out2 = malloc(lim[0]);
        REQUIRE(fields != NULL && fields2 != NULL && out != NULL && out2 != NULL);
        for (size_t off = 0; off <= 1 && off <= size; off++) {
            apigw_h1_response r, r2;
            long rc = parse_copy(data, size, off, lim, &r, fields, out), rc2;
            if (rc <= 0) {
                REQUIRE(rc >= APIGW_H1R_E_LAST && rc <= APIGW_H1R_INCOMPLETE);
                continue;
            }
            REQUIRE((size_t)rc <= size - off && (size_t)rc <= lim[0]);
            REQUIRE(r.num_fields <= lim[1]);
            check_ok(data + off, rc, &r, fields, out);
            rc2 = parse_copy(data, off + (size_t)rc, off, lim, &r2, fields2, out2);
            REQUIRE(rc2 == rc && r2.status == r.status && r2.flags == r.flags &&
                    r2.num_fields == r.num_fields && r2.content_length == r.content_length);
            REQUIRE(parse_copy(data, off + (size_t)rc - 1, off, lim, &r2, fields2, out2) ==
                    APIGW_H1R_INCOMPLETE);
        }
        free(fields);
        free(fields2);
        free(out);
        free(out2);
    }
    return 0;
}
