/* test_accesslog.c - apigw_al_line: the exact line, escaping, nulls, rounding, the
 * buffer's bound (every cap short of the line's length, on a guarded buffer) and the
 * fallback for what the Python twin must do. */
#include "check.h"

#include <math.h>

#include "apigw/accesslog.h"

#define S(x) x, sizeof(x) - 1

static int contains(const char *hay, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return 1;
    return 0;
}

static long line(char *out, size_t cap, const char *path, size_t path_n, double total,
                 double backend, const char *rid, size_t rid_n) {
    return apigw_al_line(out, 0, cap, S("2026-12-02T10:00:00"), 1764669600.0071, rid, rid_n, S("ab"), path,
                         path_n, 200, 0, 12, total, backend, -1.0, S("\"api\":\"a\""));
}

static const char WANT[] =
    "{\"time\":\"2026-12-02T10:00:00.007Z\",\"request_id\":\"r\xc3\xa9\",\"trace_id\":\"ab\","
    "\"path\":\"/p\\\"\\\\\\n\\u0001\xc3\xa9\",\"status\":200,\"bytes_in\":0,\"bytes_out\":12,"
    "\"duration_ms\":1.200,\"backend_duration_ms\":0.001,\"client_duration_ms\":null,"
    "\"api\":\"a\"}\n";

static void test_exact(void) {
    char out[1024];
    case_begin("exact line");
    long n = line(out, sizeof out, S("/p\"\\\n\x01\xc3\xa9"), 0.0012, 0.0000005, S("r\xe9"));
    CHECK(n == (long)(sizeof WANT - 1));
    CHECK(n > 0 && memcmp(out, WANT, (size_t)n) == 0);
    case_end();
}

static void test_bound(void) {
    size_t len = sizeof WANT - 1;
    for (size_t cap = 0; cap < len; cap++) {
        case_begin("cap %zu", cap);
        guard_t g;
        unsigned char *out = guard_place(&g, NULL, cap, 0);
        CHECK(line((char *)out, cap, S("/p\"\\\n\x01\xc3\xa9"), 0.0012, 0.0000005, S("r\xe9"))
              == APIGW_AL_E_SPACE);
        guard_free(&g);
        case_end();
    }
    case_begin("cap exact");
    guard_t g;
    unsigned char *out = guard_place(&g, NULL, len, 0);
    CHECK(line((char *)out, len, S("/p\"\\\n\x01\xc3\xa9"), 0.0012, 0.0000005, S("r\xe9"))
          == (long)len);
    guard_free(&g);
    case_end();
}

static void test_fallback(void) {
    char out[1024];
    case_begin("fallback");
    CHECK(line(out, sizeof out, S("/\xff"), 0.001, -1.0, NULL, 0) == APIGW_AL_E_FALLBACK);
    CHECK(line(out, sizeof out, S("/\xed\xa0\x80"), 0.001, -1.0, NULL, 0)
          == APIGW_AL_E_FALLBACK);                                      /* a surrogate */
    CHECK(line(out, sizeof out, S("/"), 1e12, -1.0, NULL, 0) == APIGW_AL_E_FALLBACK);
    CHECK(line(out, sizeof out, S("/"), 0.001, NAN, NULL, 0) == APIGW_AL_E_FALLBACK);
    case_end();
    case_begin("latin-1 request id, worst-case escapes");
    char rid[64];
    for (size_t i = 0; i < sizeof rid; i++)
        rid[i] = (char)(i % 2 ? 0x1f : 0xff);
    char big[2048];
    long n = line(big, sizeof big, S("/"), 0.001, -1.0, rid, sizeof rid);
    CHECK(n > 0 && contains(big, (size_t)n, S("\"request_id\":\"\xc3\xbf\\u001f\xc3\xbf")));
    CHECK(line(big, sizeof big, S("/"), 0.001, -1.0, NULL, 0) > 0
          && contains(big, sizeof big, S("\"request_id\":null,")));
    case_end();
}

/* The second's text apigw_al_put makes (days-to-civil) and the offset it keeps. */
static void test_put(void) {
    static const struct { double start; const char *text; } T[] = {
        {0.0, "1970-01-01T00:00:00.000Z"},
        {951868799.5, "2000-02-29T23:59:59.500Z"},
        {4107542400.25, "2100-03-01T00:00:00.250Z"},
        {253402300799.0, "9999-12-31T23:59:59.000Z"},
    };
    char out[4096];
    apigw_al_batch b = {out, 0, sizeof out, -1, {0}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        case_begin("put %s", T[i].text);
        size_t off = b.off;
        long n = apigw_al_put(&b, T[i].start, NULL, 0, "ab", S("/"), 200, 0, 0, 0.001, -1.0,
                              -1.0, "\"api\":\"a\"");
        CHECK(n > 0 && b.off == off + (size_t)n);
        CHECK(n > 0 && memcmp(out + off + 9, T[i].text, strlen(T[i].text)) == 0);
        case_end();
    }
    case_begin("put: year 10000, negative, no room");
    size_t off = b.off;
    CHECK(apigw_al_put(&b, 253402300800.0, NULL, 0, "ab", S("/"), 200, 0, 0, 0.001, -1.0,
                       -1.0, "") == APIGW_AL_E_FALLBACK);
    CHECK(apigw_al_put(&b, -0.5, NULL, 0, "ab", S("/"), 200, 0, 0, 0.001, -1.0, -1.0, "")
          == APIGW_AL_E_FALLBACK);
    b.cap = b.off + 10;
    CHECK(apigw_al_put(&b, 1.0, NULL, 0, "ab", S("/"), 200, 0, 0, 0.001, -1.0, -1.0, "")
          == APIGW_AL_E_SPACE);
    CHECK(b.off == off);
    case_end();
}

int main(void) {
    check_init();
    test_exact();
    test_bound();
    test_fallback();
    test_put();
    return check_summary("test_accesslog");
}
