/* test_forward.c - apigw_h1_forward: the exact head of a known request (hop-by-hop and
 * Connection-named fields dropped, the forwarding fields appended in their order, a new
 * request id), the client's own request id kept, the buffer's bound (every cap short of
 * the head, on a guarded buffer) and the input it leaves to the Python path. */
#include "check.h"

#include <stdint.h>

#include "apigw/http1_forward.h"

#define S(x) x, sizeof(x) - 1

/* host, connection, x-drop (named by connection), content-length, te, x-forwarded-for,
 * accept: 7 pairs, NUL-joined as the server parser hands them over. */
static const char FIELDS[] =
    "host\0example.com\0connection\0keep-alive, x-drop\0x-drop\0001\0content-length\0005\0"
    "te\0trailers\0x-forwarded-for\00010.0.0.1\0accept\0*/*";

/* What apigw_core/_purepy/http1_forward.py gives for head(...) below. */
static const char WANT[] =
    "POST /p?q=1 HTTP/1.1\r\n"
    "content-length: 5\r\n"
    "accept: */*\r\n"
    "host: backend:8080\r\n"
    "x-forwarded-for: 10.0.0.1, 192.0.2.7\r\n"
    "x-forwarded-proto: https\r\n"
    "x-forwarded-host: example.com\r\n"
    "forwarded: for=192.0.2.7;proto=https;host=\"example.com\"\r\n"
    "via: 1.1 apigw\r\n"
    "x-request-id: gw-00000000000000ff\r\n"
    "te: trailers\r\n"
    "\r\n";

static long head(char *buf, size_t cap, const char *fields, size_t fields_n, size_t num,
                 int64_t out[4]) {
    return apigw_h1_forward(buf, cap, S("POST"), S("/p?q=1"), fields, fields_n, num,
                            S("192.0.2.7"), S("https"), S("backend:8080"), NULL, 0, S("1.1"),
                            S("gw-"), 255, 0, NULL, 0, out);
}

static void test_exact(void) {
    char buf[1024];
    int64_t out[4] = {0, 0, 0, 0};
    case_begin("exact head");
    long n = head(buf, sizeof buf, FIELDS, sizeof FIELDS - 1, 7, out);
    CHECK(n == (long)(sizeof WANT - 1));
    CHECK(n > 0 && memcmp(buf, WANT, (size_t)n) == 0);
    CHECK(out[1] == 19 && memcmp(buf + out[0], "gw-00000000000000ff", 19) == 0);
    CHECK(out[2] == 5 && out[3] == APIGW_H1F_NEW_ID);
    case_end();

    case_begin("the client's request id is kept");
    static const char F2[] = "x-request-id\0abc\0transfer-encoding\0chunked";
    n = head(buf, sizeof buf, F2, sizeof F2 - 1, 2, out);
    CHECK(n > 0 && out[1] == 3 && memcmp(buf + out[0], "abc", 3) == 0);
    CHECK(out[2] == -1 && out[3] == APIGW_H1F_CHUNKED);
    CHECK(n > 0 && strstr(buf, "transfer-encoding: chunked\r\n\r\n") != NULL);
    case_end();

    case_begin("no fields");
    n = head(buf, sizeof buf, "", 0, 0, out);
    CHECK(n > 0 && memcmp(buf, "POST /p?q=1 HTTP/1.1\r\nhost: backend:8080\r\n", 42) == 0);
    case_end();
}

static void test_bound(void) {
    size_t len = sizeof WANT - 1;
    for (size_t cap = 0; cap < len; cap++) {
        case_begin("cap %zu", cap);
        guard_t g;
        unsigned char *buf = guard_place(&g, NULL, cap, 0);
        int64_t out[4];
        CHECK(head((char *)buf, cap, FIELDS, sizeof FIELDS - 1, 7, out) == APIGW_H1F_E_SPACE);
        guard_free(&g);
        case_end();
    }
    case_begin("cap exactly the head");
    guard_t g;
    unsigned char *buf = guard_place(&g, NULL, len, 0);
    int64_t out[4];
    CHECK(head((char *)buf, len, FIELDS, sizeof FIELDS - 1, 7, out) == (long)len);
    guard_free(&g);
    case_end();
}

static void test_fallback(void) {
    char buf[1024];
    int64_t out[4];
    static const struct {
        const char *name, *fields;
        size_t n, num;
    } cases[] = {
        {"a CTL in a value", S("accept\0a\001b"), 1},
        {"a repeated Content-Length", S("content-length\0001\0content-length\0001"), 2},
        {"Content-Length not digits", S("content-length\0x1"), 1},
        {"chunked with a Content-Length",
         S("transfer-encoding\0chunked\0content-length\0003"), 2},
        {"an upper-case name", S("Accept\0*/*"), 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        case_begin("fallback: %s", cases[i].name);
        CHECK(head(buf, sizeof buf, cases[i].fields, cases[i].n, cases[i].num, out)
              == APIGW_H1F_E_FALLBACK);
        CHECK(head(buf, 0, cases[i].fields, cases[i].n, cases[i].num, out)
              == APIGW_H1F_E_FALLBACK);   /* input is checked before space */
        case_end();
    }
    case_begin("fallback: a method that is not a token");
    CHECK(apigw_h1_forward(buf, sizeof buf, S("GE T"), S("/"), "", 0, 0, S("1.2.3.4"),
                           S("http"), S("b"), NULL, 0, S("1.1"), S("g"), 1, 0, NULL, 0, out)
          == APIGW_H1F_E_FALLBACK);
    case_end();
}

int main(void) {
    check_init();
    test_exact();
    test_bound();
    test_fallback();
    return check_summary("test_forward");
}
