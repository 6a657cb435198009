/* check.h - header-only helpers for the C unit tests: guarded buffers and case counting.
 *
 * guard_place() puts n bytes at the very end of a mapping whose next page is PROT_NONE,
 * so reading or writing one byte past them crashes; the SIGSEGV handler then names the
 * case that was running.  A test is a sequence of cases; a case fails if any CHECK in it
 * fails; check_summary() prints "NAME: N passed, N failed" and gives the exit status.
 */
#ifndef APIGW_TESTS_CHECK_H
#define APIGW_TESTS_CHECK_H

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, sigaction under -std=c11 */
#endif

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    unsigned char *base;
    size_t map_len;
} guard_t;

/* Returns p with p[0, n) usable and p + n on an inaccessible page.  data (may be NULL:
 * then the bytes are 0xA5) is copied in; read_only makes p[0, n) unwritable too. */
static unsigned char *guard_place(guard_t *g, const void *data, size_t n, int read_only)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (n + page - 1) / page * page;
    unsigned char *p;
    if (body == 0)
        body = page;
    g->map_len = body + page;
    g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (g->base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(g->base + body, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    p = g->base + body - n;
    if (data != NULL)
        memcpy(p, data, n);
    else
        memset(p, 0xA5, n);
    if (read_only && mprotect(g->base, body, PROT_READ) != 0) {
        perror("mprotect");
        exit(2);
    }
    return p;
}

static void guard_free(guard_t *g)
{
    munmap(g->base, g->map_len);
}

static int check_passed, check_failed, check_case_bad;
static char check_case_name[256];

static void check_on_segv(int sig)
{
    static const char msg[] = "\nFATAL: memory access outside a guarded buffer in case: ";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0 ||
        write(2, check_case_name, strlen(check_case_name)) < 0 || write(2, "\n", 1) < 0)
        _exit(3);
    _exit(3);
}

static void check_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = check_on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
}

static void case_begin(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_case_name, sizeof check_case_name, fmt, ap);
    va_end(ap);
    check_case_bad = 0;
}

static void case_end(void)
{
    if (check_case_bad)
        check_failed++;
    else
        check_passed++;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void check_fail(const char *fmt, ...)
{
    va_list ap;
    printf("FAIL [%s]: ", check_case_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    check_case_bad = 1;
}

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond))                                                                   \
            check_fail("%s:%d: %s", __FILE__, __LINE__, #cond);                        \
    } while (0)

#define CHECK_EQ_LONG(actual, expected)                                                \
    do {                                                                               \
        long a_ = (long)(actual), e_ = (long)(expected);                               \
        if (a_ != e_)                                                                  \
            check_fail("%s:%d: %s == %ld, expected %ld", __FILE__, __LINE__, #actual,  \
                       a_, e_);                                                        \
    } while (0)

static int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
