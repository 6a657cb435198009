/* apigw/histogram.h - one request into a metrics accumulator (apigw_core/runtime/metrics.py).
 *
 * An accumulator is 4 + 3 * nb doubles: the count, the sums of the total, backend and
 * client durations, then three rows of nb bucket counts (total, backend, client).
 * apigw_hist_observe adds one request: the count and the total's sum grow, and so does
 * the total's bucket: the first i with bounds[i] >= total (Python's bisect_left), or the
 * last when none is (the caller's bounds end in +Inf; a NaN compares false: bucket 0).
 * The backend and client durations go the same way into their sums and rows when they
 * are >= 0; below zero (or NaN) that part did not happen.  `bounds`: nb sorted doubles.
 *
 * Returns 0, or APIGW_HIST_E_SIZE (nothing written) when n is not 4 + 3 * nb or nb is 0.
 * No allocation; reads bounds[0, nb) and writes acc[0, n) only.
 */
#ifndef APIGW_HISTOGRAM_H
#define APIGW_HISTOGRAM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define APIGW_HIST_E_SIZE (-1)

int apigw_hist_observe(double *acc, size_t n, const double *bounds, size_t nb,
                       double total, double backend, double client);

#ifdef __cplusplus
}
#endif

#endif
