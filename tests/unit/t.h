/* t.h: a tiny header-only unit-test framework.
 *
 *     static void test_parse(void) { T_EQ_INT(parse("2"), 2); }
 *     int main(void) { T_RUN(test_parse); return T_DONE(); }
 *
 * The unit counted is the test function: it passes when it made at least one
 * check and every check passed (a test that asserts nothing is a defect, so
 * it fails).  Each check is an expression worth 1 when it held, 0 otherwise,
 * and reports file:line, the test and the expression on stderr when it fails.
 * T_DONE() prints the one final line "N passed, N failed" on stdout and ends
 * the process: exit status 0 when nothing failed, else 1.  Both `T_DONE();`
 * and `return T_DONE();` work.
 *
 * Nothing can pass unseen: a check made outside a test function (in main,
 * or a helper called from it) is not part of any counted test, so each one
 * counts as a failed test of its own, whether it held or not (a fact that
 * needs no test belongs in a _Static_assert).  A run of no test at all
 * fails too.  scripts/run-tests.sh adds a binary that crashes, exits
 * non-zero or prints no final line as a failure. */
#ifndef LLMR_T_H
#define LLMR_T_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_UNUSED_ __attribute__((unused))

static const char *t_test_ = NULL;     /* the test running; NULL between tests */
static int t_checks_, t_fails_, t_passed_, t_failed_;

T_UNUSED_ static int t_check_(int ok, const char *file, int line, const char *expr)
{
    if (t_test_ == NULL) {
        fprintf(stderr, "FAIL %s:%d: check outside a test function (move it into a "
                "test run by T_RUN, or make it a _Static_assert): %s%s\n", file, line,
                expr, ok ? "" : " (and it failed)");
        t_failed_++;
        return ok;
    }
    t_checks_++;
    if (!ok) {
        t_fails_++;
        fprintf(stderr, "%s:%d: %s: check failed: %s\n", file, line, t_test_, expr);
    }
    return ok;
}

T_UNUSED_ static int t_eq_int_(intmax_t a, intmax_t b, const char *file, int line,
                               const char *ea, const char *eb)
{
    if (t_check_(a == b, file, line, ea))
        return 1;
    fprintf(stderr, "    %s is %jd, expected %s = %jd\n", ea, a, eb, b);
    return 0;
}

T_UNUSED_ static int t_eq_str_(const char *a, const char *b, const char *file,
                               int line, const char *ea, const char *eb)
{
    int ok = (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;

    if (t_check_(ok, file, line, ea))
        return 1;
    fprintf(stderr, "    %s is %s%s%s, expected %s = %s%s%s\n",
            ea, a ? "\"" : "", a ? a : "NULL", a ? "\"" : "",
            eb, b ? "\"" : "", b ? b : "NULL", b ? "\"" : "");
    return 0;
}

T_UNUSED_ static int t_contains_(const char *h, const char *n, const char *file,
                                 int line, const char *eh, const char *en)
{
    if (t_check_(h != NULL && n != NULL && strstr(h, n) != NULL, file, line, eh))
        return 1;
    fprintf(stderr, "    %s is %s%s%s, which lacks %s = \"%s\"\n", eh,
            h ? "\"" : "", h ? h : "NULL", h ? "\"" : "", en, n ? n : "NULL");
    return 0;
}

T_UNUSED_ static void t_run_(void (*fn)(void), const char *name)
{
    t_test_ = name;
    t_checks_ = 0;
    t_fails_ = 0;
    fn();
    if (t_checks_ == 0) {
        fprintf(stderr, "FAIL %s: made no checks\n", name);
        t_failed_++;
    } else if (t_fails_ != 0) {
        fprintf(stderr, "FAIL %s: %d of %d checks failed\n", name, t_fails_, t_checks_);
        t_failed_++;
    } else {
        t_passed_++;
    }
    t_test_ = NULL;
}

T_UNUSED_ _Noreturn static int t_done_(void)
{
    if (t_passed_ + t_failed_ == 0) {
        fprintf(stderr, "FAIL: no test ran (T_RUN nothing before T_DONE)\n");
        t_failed_++;
    }
    fflush(stderr);
    printf("%d passed, %d failed\n", t_passed_, t_failed_);
    fflush(stdout);
    exit(t_failed_ != 0 ? 1 : 0);
}

#define T_CHECK(cond)       t_check_((cond) ? 1 : 0, __FILE__, __LINE__, #cond)
#define T_EQ_INT(a, b)      t_eq_int_((intmax_t) (a), (intmax_t) (b), __FILE__, __LINE__, #a, #b)
#define T_EQ_STR(a, b)      t_eq_str_((a), (b), __FILE__, __LINE__, #a, #b)
#define T_CONTAINS(h, n)    t_contains_((h), (n), __FILE__, __LINE__, #h, #n)
#define T_RUN(fn)           t_run_(fn, #fn)
#define T_DONE()            t_done_()

#endif
