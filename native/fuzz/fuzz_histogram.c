/* fuzz_histogram.c - libFuzzer target for apigw/histogram.h.
 *
 * Input: 1 byte nb (0..31), 1 byte size skew (n = 4 + 3 * nb + skew - 2), 3 doubles
 * (the durations), then up to nb doubles (the bounds, sorted here; missing ones +Inf).
 * Invariants:
 *   - the result is 0 exactly when n is 4 + 3 * nb and nb > 0, else APIGW_HIST_E_SIZE
 *     with nothing written;
 *   - nothing is read or written past bounds[nb) or acc[n) (ASan: exact-size blocks);
 *   - the count grows by one, each row by one bucket at most (the total's always), and a
 *     part's bucket is the first bound >= it or the last.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apigw/histogram.h"
#include "require.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 + 24)
        return 0;
    size_t nb = data[0] & 31, n = 4 + 3 * nb + (data[1] % 5) - 2;
    double d[3];
    memcpy(d, data + 2, sizeof d);
    double *bounds = malloc((nb ? nb : 1) * sizeof(double));
    double *acc = calloc(n ? n : 1, sizeof(double));
    REQUIRE(bounds != NULL && acc != NULL);
    size_t have = (size - 26) / sizeof(double);
    for (size_t i = 0; i < nb; i++) {
        if (i < have)
            memcpy(&bounds[i], data + 26 + i * sizeof(double), sizeof(double));
        else
            bounds[i] = INFINITY;
        if (isnan(bounds[i]))
            bounds[i] = INFINITY;   /* bounds are sorted numbers */
    }
    qsort(bounds, nb, sizeof(double), cmp);
    int r = apigw_hist_observe(acc, n, bounds, nb, d[0], d[1], d[2]);
    if (!(nb > 0 && n == 4 + 3 * nb)) {
        REQUIRE(r == APIGW_HIST_E_SIZE);
        for (size_t i = 0; i < n; i++)
            REQUIRE(acc[i] == 0);
    } else {
        REQUIRE(r == 0 && acc[0] == 1);
        for (int row = 0; row < 3; row++) {
            double v = d[row], sum = 0;
            size_t at = nb;
            for (size_t i = 0; i < nb; i++) {
                double c = acc[4 + row * nb + i];
                REQUIRE(c == 0 || c == 1);
                sum += c;
                if (c == 1)
                    at = i;
            }
            int happened = row == 0 || v >= 0;
            REQUIRE(sum == (happened ? 1 : 0));
            if (happened) {
                size_t want = 0;
                while (want < nb - 1 && bounds[want] < v)
                    want++;
                REQUIRE(at == want);
                REQUIRE(at == nb - 1 || !(bounds[at] < v));
                REQUIRE(at == 0 || bounds[at - 1] < v);
            }
        }
    }
    free(bounds);
    free(acc);
    return 0;
}
