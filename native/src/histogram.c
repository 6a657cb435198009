/* histogram.c - one request into a metrics accumulator; see apigw/histogram.h. */
#include "apigw/histogram.h"

/* The first bound >= v, or the last bucket: a linear scan, since a gateway's latencies
 * sit in the first few buckets. */
static size_t bucket(const double *bounds, size_t nb, double v) {
    size_t i = 0;
    while (i < nb - 1 && bounds[i] < v)
        i++;
    return i;
}

int apigw_hist_observe(double *acc, size_t n, const double *bounds, size_t nb,
                       double total, double backend, double client) {
    if (nb == 0 || n < 4 || (n - 4) % 3 != 0 || (n - 4) / 3 != nb)   /* (no 3 * nb: it
                                                                          could wrap) */
        return APIGW_HIST_E_SIZE;
    double *rows = acc + 4;
    acc[0] += 1;
    acc[1] += total;
    rows[bucket(bounds, nb, total)] += 1;
    if (backend >= 0) {
        acc[2] += backend;
        rows[nb + bucket(bounds, nb, backend)] += 1;
    }
    if (client >= 0) {
        acc[3] += client;
        rows[2 * nb + bucket(bounds, nb, client)] += 1;
    }
    return 0;
}
