/* test_histogram.c - apigw_hist_observe: the sums and buckets of known requests (on,
 * between and past the bounds, the parts that did not happen, NaN), on guarded buffers
 * (exactly 4 + 3 * nb doubles, so a write past them crashes), and the sizes it refuses
 * without writing. */
#include "check.h"

#include <math.h>
#include <stdint.h>

#include "apigw/histogram.h"

#define NB 4
static const double BOUNDS[NB] = {0.001, 0.01, 0.1, INFINITY};

static double *acc_new(guard_t *g, size_t n) {
    double *a = (double *)guard_place(g, NULL, n * sizeof(double), 0);
    for (size_t i = 0; i < n; i++)
        a[i] = 0;
    return a;
}

static void known_requests(void) {
    case_begin("known requests");
    guard_t g, gb;
    size_t n = 4 + 3 * NB;
    double *a = acc_new(&g, n);
    double *b = (double *)guard_place(&gb, BOUNDS, sizeof BOUNDS, 1);  /* read only */
    CHECK(apigw_hist_observe(a, n, b, NB, 0.0005, 0.001, -1) == 0);   /* below; on a bound */
    CHECK(apigw_hist_observe(a, n, b, NB, 0.05, -1, 0.2) == 0);       /* between; past 0.1 */
    CHECK(apigw_hist_observe(a, n, b, NB, 1e300, NAN, 0) == 0);       /* huge; NaN part; 0 */
    CHECK(a[0] == 3);
    CHECK(a[1] == 0.0005 + 0.05 + 1e300);
    CHECK(a[2] == 0.001 && a[3] == 0.2);
    double want[3][NB] = {{1, 0, 1, 1}, {1, 0, 0, 0}, {1, 0, 0, 1}};
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < NB; i++)
            CHECK(a[4 + r * NB + i] == want[r][i]);
    guard_free(&gb);
    guard_free(&g);
    case_end();

    case_begin("NaN total: counted, bucket 0 (bisect_left's answer)");
    double c[4 + 3 * NB] = {0};
    CHECK(apigw_hist_observe(c, 4 + 3 * NB, BOUNDS, NB, NAN, -0.5, -INFINITY) == 0);
    CHECK(c[0] == 1 && isnan(c[1]) && c[4] == 1 && c[2] == 0 && c[3] == 0);
    case_end();

    case_begin("one bound: everything in its bucket");
    double d[7] = {0}, one[1] = {1.0};
    CHECK(apigw_hist_observe(d, 7, one, 1, 5.0, 0.5, 1.0) == 0);
    CHECK(d[0] == 1 && d[4] == 1 && d[5] == 1 && d[6] == 1);
    case_end();
}

static void refused_sizes(void) {
    size_t sizes[][2] = {{0, 0}, {4, 0}, {4 + 3 * NB - 1, NB}, {4 + 3 * NB + 1, NB},
                         {(size_t)-1, NB},
                         /* 4 + 3 * nb wraps to 17 for this nb (3's inverse mod 2^64 * 13):
                          * a size check by multiplication would let it through */
                         {17, (size_t)(0xAAAAAAAAAAAAAAABull * 13u)}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        case_begin("refused n=%zu nb=%zu", sizes[k][0], sizes[k][1]);
        double a[4 + 3 * NB + 1];
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
            a[i] = 7;
        CHECK(apigw_hist_observe(a, sizes[k][0], BOUNDS, sizes[k][1], 0.1, 0.1, 0.1)
              == APIGW_HIST_E_SIZE);
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
            CHECK(a[i] == 7);
        case_end();
    }
}

int main(void) {
    check_init();
    known_requests();
    refused_sizes();
    return check_summary("test_histogram");
}
