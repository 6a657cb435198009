"""cffi builder (API mode) for ``apigw_core._native``, the C core's one Python binding.

setup.py names it in ``cffi_modules``; it can also be run by hand from anywhere
(``python apigw_core/_native_build.py``) to build the extension in place for a quick try.
The declarations below mirror native/include/apigw/*.h (http1, http1_response, buckets,
ws, accesslog, otlp, http1_forward, histogram), which stay the contract: constants are declared as
``#define NAME ...`` so their values are read from the header at compile time, and the
structs are spelled out so that cffi checks their layout against it.
"""

from __future__ import annotations

import os

import cffi

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


def _path(rel: str) -> str:
    """A repo-root-relative path: relative when we run from the root (setuptools wants
    relative source paths there), absolute otherwise so the build works from anywhere."""
    if os.path.abspath(os.getcwd()) == _ROOT:
        return rel
    return os.path.join(_ROOT, rel)


CDEF = """
#define APIGW_H1_INCOMPLETE ...
#define APIGW_H1_E_BARE_CR ...
#define APIGW_H1_E_BARE_LF ...
#define APIGW_H1_E_BAD_METHOD ...
#define APIGW_H1_E_BAD_TARGET ...
#define APIGW_H1_E_BAD_REQUEST_LINE ...
#define APIGW_H1_E_BAD_VERSION ...
#define APIGW_H1_E_VERSION_NOT_SUPPORTED ...
#define APIGW_H1_E_REQUEST_LINE_TOO_LONG ...
#define APIGW_H1_E_HEAD_TOO_LARGE ...
#define APIGW_H1_E_TOO_MANY_FIELDS ...
#define APIGW_H1_E_OBS_FOLD ...
#define APIGW_H1_E_BAD_FIELD_NAME ...
#define APIGW_H1_E_WS_BEFORE_COLON ...
#define APIGW_H1_E_BAD_FIELD_VALUE ...
#define APIGW_H1_E_BAD_CONTENT_LENGTH ...
#define APIGW_H1_E_DUPLICATE_CONTENT_LENGTH ...
#define APIGW_H1_E_BAD_TRANSFER_ENCODING ...
#define APIGW_H1_E_UNSUPPORTED_TRANSFER_CODING ...
#define APIGW_H1_E_TE_WITH_CONTENT_LENGTH ...
#define APIGW_H1_E_TE_ON_HTTP10 ...
#define APIGW_H1_E_MISSING_HOST ...
#define APIGW_H1_E_DUPLICATE_HOST ...
#define APIGW_H1_E_BAD_HOST ...
#define APIGW_H1_E_BAD_CONNECTION ...
#define APIGW_H1_E_CONNECTION_NAMES_FRAMING ...
#define APIGW_H1_E_LAST ...

#define APIGW_H1_F_CHUNKED ...
#define APIGW_H1_F_CONN_CLOSE ...
#define APIGW_H1_F_CONN_KEEP_ALIVE ...
#define APIGW_H1_F_CONN_UPGRADE ...
#define APIGW_H1_F_UPGRADE ...
#define APIGW_H1_F_EXPECT_CONTINUE ...

typedef struct {
    uint32_t max_request_line;
    uint32_t max_head;
    uint32_t max_fields;
} apigw_h1_limits;

typedef struct {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} apigw_h1_field;

typedef struct {
    uint32_t method_off, method_len;
    uint32_t target_off, target_len;
    int32_t version_minor;
    uint32_t num_fields;
    uint32_t flags;
    int64_t content_length;
    size_t out_len;
} apigw_h1_request;

long apigw_h1_parse_request(const unsigned char *buf, size_t len,
                            const apigw_h1_limits *limits, apigw_h1_request *req,
                            apigw_h1_field *fields, unsigned char *out, size_t out_cap);
typedef struct {
    apigw_h1_limits limits;
    apigw_h1_request req;
    apigw_h1_field *fields;
    unsigned char *out;
    size_t out_cap;
} apigw_h1_parser;

long apigw_h1_parse(apigw_h1_parser *p, const unsigned char *buf, size_t off, size_t len);
int apigw_h1_error_status(long code);
const char *apigw_h1_error_name(long code);
"""

# native/include/apigw/http1_response.h
CDEF_RESPONSE = """
#define APIGW_H1R_INCOMPLETE ...
#define APIGW_H1R_E_LAST ...
typedef struct {
    uint32_t max_head;
    uint32_t max_fields;
    apigw_h1_field *fields;
    unsigned char *out;
    size_t out_cap;
    int32_t status;
    int32_t version_minor;
    uint32_t reason_off, reason_len;
    uint32_t num_fields;
    uint32_t flags;
    int64_t content_length;
    size_t out_len;
} apigw_h1_response;
long apigw_h1_parse_response(apigw_h1_response *r, const unsigned char *buf, size_t off,
                             size_t len);
"""

# native/include/apigw/buckets.h
CDEF_BUCKETS = """
#define APIGW_BK_OK ...
#define APIGW_BK_E_FULL ...
#define APIGW_BK_E_INVAL ...
size_t apigw_bk_bytes(uint64_t slots);
int apigw_bk_init(void *mem, size_t len, uint64_t slots, uint64_t seed);
int apigw_bk_check(const void *mem, size_t len);
int apigw_bk_take(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t n, int64_t now_ns, int64_t *out);
int apigw_bk_refund(void *mem, const char *key, size_t key_len, int64_t calls,
                    int64_t period_ns, int64_t n, int64_t now_ns);
int apigw_bk_peek(void *mem, const char *key, size_t key_len, int64_t calls,
                  int64_t period_ns, int64_t now_ns, int64_t *out);
int apigw_bk_count(void *mem, const char *key, size_t key_len, int64_t limit,
                   int64_t period_ns, int64_t start_ns, int64_t n, int64_t now_ns,
                   int force, int64_t *out);
int apigw_bk_acquire(void *mem, const char *key, size_t key_len, int64_t max_count);
int apigw_bk_release(void *mem, const char *key, size_t key_len);
int64_t apigw_bk_take_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t n, int64_t now_ns);
int64_t apigw_bk_peek_packed(uintptr_t addr, const char *key, size_t key_len, int64_t calls,
                             int64_t period_ns, int64_t now_ns);
int64_t apigw_bk_last_wait(void);
uint64_t apigw_bk_hash(const char *key, size_t key_len, uint64_t seed);
"""

# native/include/apigw/ws.h
CDEF_WS = """
#define APIGW_WS_UTF8_INVALID ...
unsigned apigw_ws_mask(const unsigned char *src, size_t len, unsigned char *dst,
                       const unsigned char key[4], unsigned phase);
long apigw_ws_utf8(uint32_t state, const unsigned char *src, size_t len,
                   const unsigned char *key, unsigned phase, int final);
long apigw_ws_mask_utf8(uint32_t state, const unsigned char *src, size_t len,
                        unsigned char *dst, const unsigned char *vkey,
                        const unsigned char okey[4], unsigned phase, int final);
"""

# native/include/apigw/accesslog.h
CDEF_ACCESSLOG = """
#define APIGW_AL_E_SPACE ...
#define APIGW_AL_E_FALLBACK ...
long apigw_al_line(char *buf, size_t off, size_t cap, const char *sec, size_t sec_n,
                   double start, const char *rid, size_t rid_n, const char *trace,
                   size_t trace_n, const char *path, size_t path_n, int64_t status, int64_t bytes_in,
                   int64_t bytes_out, double total, double backend, double client,
                   const char *rest, size_t rest_n);
typedef struct {
    char *buf;
    size_t off, cap;
    int64_t sec;
    char sec_text[20];
} apigw_al_batch;
long apigw_al_put(apigw_al_batch *b, double start, const char *rid, size_t rid_n,
                  const char *trace, const char *path, size_t path_n, int64_t status,
                  int64_t bytes_in, int64_t bytes_out, double total, double backend,
                  double client, const char *rest);
"""

# native/include/apigw/otlp.h
CDEF_OTLP = """
#define APIGW_OTLP_E_SPACE ...
#define APIGW_OTLP_E_INPUT ...
long apigw_otlp_span(char *buf, size_t off, size_t cap, const char *trace_hex, size_t trace_n,
                     const char *span_hex, size_t span_n, const char *parent_hex,
                     size_t parent_n, const char *name, size_t name_n, unsigned kind,
                     double start, double end, double off_s, const char *attrs,
                     size_t attrs_n, const char *tail, size_t tail_n);
long apigw_otlp_pair(char *buf, size_t off, size_t cap, const char *parts, size_t parts_n,
                     const char *trace, const char *span, const char *parent,
                     const char *cspan, double start, double end, double t0, double t1,
                     double off_s);
"""

# native/include/apigw/http1_forward.h
CDEF_FORWARD = """
#define APIGW_H1F_E_SPACE ...
#define APIGW_H1F_E_FALLBACK ...
#define APIGW_H1F_CHUNKED ...
#define APIGW_H1F_NEW_ID ...
long apigw_h1_forward(char *buf, size_t cap, const char *method, size_t method_n,
                      const char *target, size_t target_n, const char *fields,
                      size_t fields_n, size_t num_fields, const char *client_ip,
                      size_t client_ip_n, const char *scheme, size_t scheme_n,
                      const char *backend, size_t backend_n, const char *authority,
                      size_t authority_n, const char *version, size_t version_n,
                      const char *id_prefix, size_t id_prefix_n, uint64_t id_next,
                      int keep_xfcc, const char *xfcc, size_t xfcc_n, int64_t out[4]);
"""

# native/include/apigw/histogram.h
CDEF_HISTOGRAM = """
#define APIGW_HIST_E_SIZE ...
int apigw_hist_observe(double *acc, size_t n, const double *bounds, size_t nb,
                       double total, double backend, double client);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.cdef(CDEF_RESPONSE)
ffibuilder.cdef(CDEF_BUCKETS)
ffibuilder.cdef(CDEF_WS)
ffibuilder.cdef(CDEF_ACCESSLOG)
ffibuilder.cdef(CDEF_OTLP)
ffibuilder.cdef(CDEF_FORWARD)
ffibuilder.cdef(CDEF_HISTOGRAM)
ffibuilder.set_source(
    "apigw_core._native",
    '#include "apigw/http1.h"\n#include "apigw/http1_response.h"\n'
    '#include "apigw/buckets.h"\n#include "apigw/ws.h"\n#include "apigw/accesslog.h"\n'
    '#include "apigw/otlp.h"\n#include "apigw/http1_forward.h"\n#include "apigw/histogram.h"',
    sources=[_path("native/src/http1.c"), _path("native/src/http1_response.c"),
             _path("native/src/buckets.c"),
             _path("native/src/buckets_ops.c"),
             _path("native/src/ws.c"), _path("native/src/accesslog.c"),
             _path("native/src/otlp.c"), _path("native/src/http1_forward.c"),
             _path("native/src/histogram.c")],
    include_dirs=[_path("native/include")],
    # -ffp-contract=off: no fused multiply-add, so the C arithmetic on doubles rounds
    # where Python's does (otlp.c's nanoseconds, accesslog.c's milliseconds)
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11", "-ffp-contract=off"],
)

if __name__ == "__main__":
    # Build by hand, from any directory: compile in a scratch dir, then put the
    # extension next to this file (where an editable install would put it).
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        built = ffibuilder.compile(tmpdir=tmp, verbose=True)
        dest = os.path.join(_HERE, os.path.basename(built))
        shutil.copyfile(built, dest)
    print(dest)
