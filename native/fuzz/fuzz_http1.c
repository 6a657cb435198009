/* fuzz_http1.c - libFuzzer target for apigw_h1_parse_request.
 *
 * Each input is copied into a heap buffer of exactly its size (so ASan sees any
 * over-read) and parsed under small and default limits, with and without `out`.  For any
 * input the answer is either a valid parse whose slots all lie inside the consumed bytes
 * or one of the header's codes; anything else aborts.  A successful parse must also give
 * the same answer on exactly the consumed bytes, and INCOMPLETE one byte short of them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/http1.h"
#include "require.h"

static const apigw_h1_limits LIMITS[] = {
    {16, 64, 4},          /* small: the limits themselves get exercised */
    {8192, 65536, 100},   /* the defaults */
};

static int in_range(uint32_t off, uint32_t len, long consumed)
{
    return (uint64_t)off + len <= (uint64_t)consumed;
}

static long parse_copy(const uint8_t *data, size_t size, const apigw_h1_limits *lim,
                       apigw_h1_request *req, apigw_h1_field *fields, int with_out,
                       unsigned char **out_ret)
{
    unsigned char *buf = malloc(size ? size : 1);
    unsigned char *out = NULL;
    long rc;
    REQUIRE(buf != NULL);
    memcpy(buf, data, size);
    /* out_cap must cover the bytes consumed, which are at most `size`. */
    if (with_out) {
        out = malloc(size ? size : 1);
        REQUIRE(out != NULL);
    }
    rc = apigw_h1_parse_request(buf, size, lim, req, fields, out, with_out ? size : 0);
    free(buf);
    if (out_ret != NULL)
        *out_ret = out;
    else
        free(out);
    return rc;
}

static void check_code(long rc)
{
    int status = apigw_h1_error_status(rc);
    const char *name = apigw_h1_error_name(rc);
    REQUIRE(rc >= APIGW_H1_E_LAST && rc <= -1);
    REQUIRE(status == 0 || status == 400 || status == 414 || status == 431 ||
            status == 501 || status == 505);
    REQUIRE((status == 0) == (rc == APIGW_H1_INCOMPLETE));
    REQUIRE(name != NULL && name[0] != '\0');
}

/* out = "method\0target\0name\0value..." (names lower-cased); the final NUL is optional. */
static void check_out(const uint8_t *data, const apigw_h1_request *req,
                      const apigw_h1_field *fields, const unsigned char *out)
{
    size_t o = 0;
    uint32_t i, k;
    const uint32_t offs[2] = {req->method_off, req->target_off};
    const uint32_t lens[2] = {req->method_len, req->target_len};
    for (i = 0; i < 2 + 2 * req->num_fields; i++) {
        uint32_t off = i < 2 ? offs[i] : (i % 2 == 0 ? fields[i / 2 - 1].name_off
                                                     : fields[i / 2 - 1].value_off);
        uint32_t len = i < 2 ? lens[i] : (i % 2 == 0 ? fields[i / 2 - 1].name_len
                                                     : fields[i / 2 - 1].value_len);
        int is_name = i >= 2 && i % 2 == 0;
        REQUIRE(o + len <= req->out_len);
        for (k = 0; k < len; k++) {
            unsigned char c = data[off + k];
            if (is_name && c >= 'A' && c <= 'Z')
                c |= 0x20;
            REQUIRE(out[o + k] == c);
        }
        o += len;
        if (o < req->out_len) {
            REQUIRE(out[o] == '\0');
            o++;
        } else {
            REQUIRE(i == 1 + 2 * req->num_fields); /* only the last may lack its NUL */
        }
    }
    REQUIRE(o == req->out_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t li;
    for (li = 0; li < sizeof LIMITS / sizeof LIMITS[0]; li++) {
        const apigw_h1_limits *lim = &LIMITS[li];
        apigw_h1_field *fields = malloc(lim->max_fields * sizeof *fields);
        apigw_h1_field *fields2 = malloc(lim->max_fields * sizeof *fields2);
        apigw_h1_request req, req2;
        unsigned char *out = NULL;
        long rc, rc2;
        uint32_t i;

        REQUIRE(fields != NULL && fields2 != NULL);
        rc = parse_copy(data, size, lim, &req, fields, 1, &out);
        if (rc <= 0) {
            check_code(rc);
            /* `out` is optional: leaving it out changes nothing. */
            REQUIRE(parse_copy(data, size, lim, &req2, fields2, 0, NULL) == rc);
        } else {
            REQUIRE((size_t)rc <= size);
            REQUIRE(req.num_fields <= lim->max_fields);
            REQUIRE(req.version_minor == 0 || req.version_minor == 1);
            REQUIRE(req.content_length >= -1);
            REQUIRE(in_range(req.method_off, req.method_len, rc) && req.method_len > 0);
            REQUIRE(in_range(req.target_off, req.target_len, rc) && req.target_len > 0);
            for (i = 0; i < req.num_fields; i++) {
                REQUIRE(in_range(fields[i].name_off, fields[i].name_len, rc));
                REQUIRE(in_range(fields[i].value_off, fields[i].value_len, rc));
                REQUIRE(fields[i].name_len > 0);
            }
            REQUIRE(req.out_len <= (size_t)rc);
            check_out(data, &req, fields, out);

            rc2 = parse_copy(data, size, lim, &req2, fields2, 0, NULL);
            REQUIRE(rc2 == rc && req2.out_len == 0 && req2.num_fields == req.num_fields &&
                    req2.flags == req.flags && req2.content_length == req.content_length);
            /* The head alone parses the same; one byte less is incomplete. */
            REQUIRE(parse_copy(data, (size_t)rc, lim, &req2, fields2, 0, NULL) == rc);
            REQUIRE(parse_copy(data, (size_t)rc - 1, lim, &req2, fields2, 0, NULL) ==
                    APIGW_H1_INCOMPLETE);
        }
        free(out);
        free(fields);
        free(fields2);
    }
    return 0;
}
