/*
 * ctest.h - the smallest test harness: TEST(name) { CHECK(...); } and
 * CTEST_MAIN(run_all) printing "N passed, N failed, N skipped" last.
 */
#ifndef CTEST_H
#define CTEST_H
#include <stdio.h>

static int ctest_failed_checks;
static int ctest_passed, ctest_failed, ctest_skipped;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            ctest_failed_checks++;                                         \
        }                                                                  \
    } while (0)

#define RUN(test)                                                          \
    do {                                                                   \
        int before_ = ctest_failed_checks;                                 \
        test();                                                            \
        if (ctest_failed_checks == before_) {                              \
            ctest_passed++;                                                \
            printf("ok %s\n", #test);                                      \
        } else {                                                           \
            ctest_failed++;                                                \
            printf("FAILED %s\n", #test);                                  \
        }                                                                  \
    } while (0)

#define SKIP(test, why)                                                    \
    do {                                                                   \
        ctest_skipped++;                                                   \
        printf("skipped %s: %s\n", #test, why);                            \
    } while (0)

#define CTEST_END()                                                        \
    do {                                                                   \
        printf("%d passed, %d failed, %d skipped\n", ctest_passed,         \
               ctest_failed, ctest_skipped);                               \
        return ctest_failed ? 1 : 0;                                       \
    } while (0)

#endif
