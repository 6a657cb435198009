/* require.h - the fuzz targets' invariant check: a broken one names itself and aborts, so
 * libFuzzer keeps the input. */
#ifndef APIGW_FUZZ_REQUIRE_H
#define APIGW_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

#endif
