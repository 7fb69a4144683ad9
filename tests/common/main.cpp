// The test executables' main: doctest's, plus one guard. ctest runs each case as
// `exe --test-case=NAME`; a NAME that no case matches (a ';' in it split by CMake, a renamed case
// with a stale registration) would run zero cases and exit 0, a pass that tested nothing. Here a
// run with a --test-case filter that ran no case fails.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <string>

namespace {

std::atomic<int> g_cases_started{0};

struct CaseCounter : doctest::IReporter {
    explicit CaseCounter(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData&) override { ++g_cases_started; }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

REGISTER_LISTENER("case_counter", 1, CaseCounter);

}  // namespace

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int result = context.run();
    if (context.shouldExit()) return result;  // --help, --list-test-cases, ...
    bool filtered = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        filtered = filtered || a.rfind("--test-case=", 0) == 0 || a.rfind("-tc=", 0) == 0 ||
                   a.rfind("--dt-test-case=", 0) == 0 || a.rfind("--dt-tc=", 0) == 0;
    }
    if (filtered && g_cases_started == 0) {
        std::fprintf(stderr, "no test case matched the --test-case filter: nothing was tested\n");
        return result ? result : 1;
    }
    return result;
}
