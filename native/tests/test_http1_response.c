/* test_http1_response.c - unit tests of apigw_h1_parse_response (apigw/http1_response.h).
 *
 * Strategy: byte fixtures in a table, each placed at the very end of a read-only guarded
 * mapping (check.h) with the field slots and `out` guarded the same way, so a read past the
 * input or a write past a slot crashes and names the case.  Every valid head is also cut
 * at every length (INCOMPLETE each time) and parsed at an offset; every code is expected
 * by some case.  The Python differential test (tests/native/test_response_twin.py) covers
 * the rest against the twin.
 */
#include "check.h"

#include <stdint.h>

#include "apigw/http1_response.h"

static int code_seen[1 - APIGW_H1R_E_LAST];

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    uint32_t max_head, max_fields;
    long rc;          /* expected: > 0 consumed, or a code */
    int status;
    int64_t cl;
    uint32_t flags, nfields;
} rcase;

#define IN(s) .in = (s), .len = sizeof(s) - 1
#define F_CH APIGW_H1_F_CHUNKED
#define F_CL APIGW_H1_F_CONN_CLOSE
#define F_KA APIGW_H1_F_CONN_KEEP_ALIVE

static const rcase CASES[] = {
    {"ok", IN("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\n\r\nhello world\n"),
     65536, 100, 54, 200, 12, 0, 2},
    {"no reason", IN("HTTP/1.1 204\r\n\r\n"), 65536, 100, 16, 204, -1, 0, 0},
    {"chunked close", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n"
                         "Connection: x, close\r\n\r\n"), 65536, 100, 71, 200, -1,
     F_CH | F_CL, 2},
    {"1.0 keep-alive", IN("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n"), 65536, 100,
     43, 200, -1, F_KA, 1},
    {"1xx no framing", IN("HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n"), 65536, 100,
     44, 100, -1, 0, 1},
    {"incomplete", IN("HTTP/1.1 200 OK\r\n"), 65536, 100, APIGW_H1R_INCOMPLETE, 0, 0, 0, 0},
    {"not http", IN("HTTX"), 65536, 100, APIGW_H1R_E_NOT_HTTP, 0, 0, 0, 0},
    {"bare lf", IN("HTTP/1.1 200 OK\n"), 65536, 100, APIGW_H1R_E_BARE_LF, 0, 0, 0, 0},
    {"too large", IN("HTTP/1.1 200 OK\r\nA: b\r\n\r\n"), 24, 100,
     APIGW_H1R_E_HEAD_TOO_LARGE, 0, 0, 0, 0},
    {"status line", IN("HTTP/1.1 200OK\r\n\r\n"), 65536, 100, APIGW_H1R_E_STATUS_LINE, 0, 0,
     0, 0},
    {"major", IN("HTTP/2.0 200 OK\r\n\r\n"), 65536, 100, APIGW_H1R_E_MAJOR_VERSION, 0, 0, 0,
     0},
    {"below 100", IN("HTTP/1.1 099 x\r\n\r\n"), 65536, 100, APIGW_H1R_E_STATUS_BELOW_100, 0,
     0, 0, 0},
    {"obs-fold", IN("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_OBS_FOLD, 0, 0, 0, 0},
    {"field bare cr", IN("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_FIELD_BARE_CR, 0, 0, 0, 0},
    {"field bare lf", IN("HTTP/1.1 200 OK\r\nA: b\nc\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_FIELD_BARE_LF, 0, 0, 0, 0},
    {"missing colon", IN("HTTP/1.1 200 OK\r\nA b\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_MISSING_COLON, 0, 0, 0, 0},
    {"ws before colon", IN("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_WS_BEFORE_COLON, 0, 0, 0, 0},
    {"bad name", IN("HTTP/1.1 200 OK\r\n(A): b\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_BAD_FIELD_NAME, 0, 0, 0, 0},
    {"bad value", IN("HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_BAD_FIELD_VALUE, 0, 0, 0, 0},
    {"too many", IN("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), 65536, 1,
     APIGW_H1R_E_TOO_MANY_FIELDS, 0, 0, 0, 0},
    {"repeated cl", IN("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
     65536, 100, APIGW_H1R_E_REPEATED_CONTENT_LENGTH, 0, 0, 0, 0},
    {"cl list", IN("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_BAD_CONTENT_LENGTH, 0, 0, 0, 0},
    {"cl 19 digits", IN("HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n"),
     65536, 100, APIGW_H1R_E_BAD_CONTENT_LENGTH, 0, 0, 0, 0},
    {"te gzip", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 65536,
     100, APIGW_H1R_E_BAD_TRANSFER_ENCODING, 0, 0, 0, 0},
    {"te with cl", IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0"
                      "\r\n\r\n"), 65536, 100, APIGW_H1R_E_TE_WITH_CONTENT_LENGTH, 0, 0, 0, 0},
    {"te on 1.0", IN("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 65536, 100,
     APIGW_H1R_E_TE_ON_HTTP10, 0, 0, 0, 0},
};

static apigw_h1_field first_field;  /* slot 0, copied out before the slots are unmapped */

static long parse_guarded(const char *in, size_t len, size_t off, uint32_t max_head,
                          uint32_t max_fields, apigw_h1_response *r)
{
    guard_t gi, gf, go;
    size_t nslots = max_fields ? max_fields : 1;
    const unsigned char *buf = guard_place(&gi, in, len, 1);
    apigw_h1_field *slots =
        (apigw_h1_field *)(void *)guard_place(&gf, NULL, nslots * sizeof *slots, 0);
    unsigned char *out = guard_place(&go, NULL, max_head, 0);
    long rc;
    memset(r, 0xA5, sizeof *r);
    r->max_head = max_head;
    r->max_fields = max_fields;
    r->fields = slots;
    r->out = out;
    r->out_cap = max_head;
    rc = apigw_h1_parse_response(r, buf, off, len);
    if (rc > 0)  /* out must hold "reason\0name\0value\0..." within what was consumed */
        CHECK(r->out_len <= (size_t)rc && out[r->out_len - 1] == 0);
    if (rc > 0 && r->num_fields > 0)
        first_field = slots[0];
    r->fields = NULL;
    guard_free(&gi);
    guard_free(&gf);
    guard_free(&go);
    return rc;
}

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const rcase *c = &CASES[i];
        apigw_h1_response r;
        long rc;
        case_begin("%s", c->name);
        rc = parse_guarded(c->in, c->len, 0, c->max_head, c->max_fields, &r);
        CHECK_EQ_LONG(rc, c->rc);
        if (rc < 0 && rc >= APIGW_H1R_E_LAST)
            code_seen[-rc] = 1;
        if (rc > 0) {
            CHECK_EQ_LONG(r.status, c->status);
            CHECK_EQ_LONG(r.content_length, c->cl);
            CHECK_EQ_LONG(r.flags, c->flags);
            CHECK_EQ_LONG(r.num_fields, c->nfields);
            for (size_t cut = 0; cut < (size_t)rc; cut++)
                CHECK_EQ_LONG(parse_guarded(c->in, cut, 0, c->max_head, c->max_fields, &r),
                              APIGW_H1R_INCOMPLETE);
        }
        case_end();
    }
}

static void test_offset(void)
{
    static const char in[] = "xyzHTTP/1.1 200 OK\r\nA:  b \r\n\r\n";
    apigw_h1_response r;
    case_begin("offset");
    CHECK_EQ_LONG(parse_guarded(in, sizeof in - 1, 3, 65536, 4, &r), (long)sizeof in - 4);
    CHECK_EQ_LONG(r.num_fields, 1);
    CHECK_EQ_LONG(first_field.name_off, 17);
    CHECK_EQ_LONG(first_field.value_off, 21);
    CHECK_EQ_LONG(first_field.value_len, 1);
    CHECK_EQ_LONG(r.reason_off, 13);
    CHECK_EQ_LONG(r.reason_len, 2);
    CHECK_EQ_LONG(parse_guarded(in, 3, 3, 65536, 4, &r), APIGW_H1R_INCOMPLETE);
    case_end();
}

static void test_every_code_covered(void)
{
    case_begin("every code covered");
    for (long c = APIGW_H1R_E_NOT_HTTP; c >= APIGW_H1R_E_LAST; c--)
        if (!code_seen[-c])
            check_fail("no case expects %ld", c);
    case_end();
}

int main(void)
{
    check_init();
    test_cases();
    test_offset();
    test_every_code_covered();
    return check_summary("test_http1_response");
}
