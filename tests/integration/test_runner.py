"""The runners' safeguards (issue 10, item 5: tests that cannot silently pass).

run.py, scripts/run-tests.sh and tests/unit/t.h each promise to count as a
failure what would otherwise pass unseen (README, Tests).  Each test here runs
the real runner as a subprocess on a fixture (tests/integration/fixtures/)
that breaks one rule, and checks that the run exits non-zero, says why, and
counts exactly what it should; a control fixture that breaks nothing passes,
so a failure is the guard's, not the set-up's.  The layering check of
scripts/check-layers.sh is run the same way on a copy of the sources."""
import os
import re
import shutil
import subprocess

import harness
from harness import BUILD, ROOT, tmpdir

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
CC = os.environ.get("CC", "cc")


def final_line(out):
    lines = re.findall(r"^\d+ passed, \d+ failed$", out, re.M)
    assert lines, "no final line in:\n" + out
    return lines[-1]


# ------------------------------------------------------------ run.py

def run_py(fixture, *args):
    """run.py and harness.py copied beside tests/integration/fixtures/runner/
    FIXTURE.py (as test_fixture.py), run as `make test` runs them."""
    d = tmpdir()
    for f in ("run.py", "harness.py"):
        shutil.copy(os.path.join(HERE, f), d)
    shutil.copy(os.path.join(FIX, "runner", fixture + ".py"), os.path.join(d, "test_fixture.py"))
    pidf = os.path.join(d, "fixture.pid")
    env = dict(os.environ, LLMR_FIXTURE_PID=pidf)
    r = subprocess.run(["python3", os.path.join(d, "run.py"), "--build", BUILD] + list(args),
                       capture_output=True, text=True, timeout=60 * harness.SLOW, cwd=d, env=env)
    r.out, r.pidf = r.stdout + r.stderr, pidf
    return r


def refused(fixture, final, *why, args=()):
    r = run_py(fixture, *args)
    assert r.returncode == 1, (r.returncode, r.out)
    assert final_line(r.out) == final, r.out
    for w in why:
        assert w in r.out, (w, r.out)
    return r


def test_run_py_counts_a_clean_fixture_as_passed():
    r = run_py("good")
    assert r.returncode == 0, r.out
    assert final_line(r.out) == "2 passed, 0 failed", r.out
    assert "PASS test_fixture.test_one" in r.out and "PASS test_fixture.test_two" in r.out


def test_run_py_fails_a_file_that_does_not_import():
    refused("import_error", "0 passed, 1 failed", "FAIL test_fixture (file)",
            "RuntimeError: fixture module code broke")


def test_run_py_fails_a_file_without_tests():
    refused("no_test", "0 passed, 1 failed", "no test_ function in test_fixture.py")


def test_run_py_fails_a_test_name_defined_twice():
    r = refused("twice", "2 passed, 1 failed", "FAIL test_fixture (file)",
                "test names defined twice (only the last one runs): test_same (again at line 12)")
    assert "PASS test_fixture.test_ok" in r.out


def test_run_py_fails_a_test_that_returns_a_value():
    refused("returns", "1 passed, 1 failed", "FAIL test_fixture.test_returns",
            "the test returned False instead of asserting it")


def test_run_py_fails_test_names_that_would_not_run():
    refused("not_plain", "1 passed, 2 failed", "FAIL test_fixture.test_generator",
            "a generator or coroutine: calling it would not run its body",
            "FAIL test_fixture.test_value", "3 is not a function")


def test_run_py_fails_a_k_that_matches_nothing():
    refused("good", "0 passed, 1 failed", "no test matched -k 'no_such_test'",
            args=("-k", "no_such_test"))
    # and -k selects: one of the two ran
    r = run_py("good", "-k", "test_two")
    assert r.returncode == 0 and final_line(r.out) == "1 passed, 0 failed", r.out


def test_run_py_stops_a_test_at_its_deadline_and_goes_on():
    r = refused("deadline", "1 passed, 1 failed", "FAIL test_fixture.test_stuck",
                "TestTimeout: test_fixture.test_stuck ran past its deadline of")
    assert "PASS test_fixture.test_zz_after" in r.out, r.out
    took = float(re.search(r"FAIL test_fixture.test_stuck +([\d.]+)s", r.out).group(1))
    assert 1.0 * harness.SLOW <= took < 1.0 * harness.SLOW + harness.slack(5), r.out


def test_run_py_fails_a_sanitizer_line_and_stops_the_process():
    r = refused("bad_log", "0 passed, 1 failed", "FAIL test_fixture.test_liar",
                "liar log has: x.c:1:2: runtime error: fixture")
    pid = int(open(r.pidf).read())
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(")")[-1].split()[0] == "Z", \
        "the fixture's process was left running"


# ------------------------------------------------------------ run-tests.sh and t.h

def unit_tree(*fixtures, capture=()):
    """A tree with scripts/run-tests.sh and each fixture as tests/unit/test_NAME.c,
    compiled with tests/unit/t.h (and common/log.c) into build/tests/test_NAME."""
    d = tmpdir()
    os.makedirs(os.path.join(d, "scripts"))
    os.makedirs(os.path.join(d, "tests", "unit"))
    os.makedirs(os.path.join(d, "build", "tests"))
    shutil.copy(os.path.join(ROOT, "scripts", "run-tests.sh"), os.path.join(d, "scripts"))
    for name in fixtures:
        src = os.path.join(d, "tests", "unit", "test_%s.c" % name)
        shutil.copy(os.path.join(FIX, "unit", name + ".c"), src)
        cc = subprocess.run([CC, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                             "-I" + os.path.join(ROOT, "tests", "unit"),
                             "-I" + os.path.join(ROOT, "common"),
                             "-o", os.path.join(d, "build", "tests", "test_" + name), src,
                             os.path.join(ROOT, "common", "log.c")]
                            + (["-DCAPTURE"] if name in capture else []),
                            capture_output=True, text=True, timeout=120)
        assert cc.returncode == 0, cc.stderr
    return d


def run_tests(d, unit_timeout=300):
    env = dict(os.environ, BUILD="build", UNIT_TIMEOUT=str(unit_timeout))
    r = subprocess.run(["sh", os.path.join(d, "scripts", "run-tests.sh"), "unit"],
                       capture_output=True, text=True, timeout=120 * harness.SLOW, env=env)
    r.out = r.stdout + r.stderr
    return r


def unit_refused(fixture, final, *why, unit_timeout=300):
    r = run_tests(unit_tree(fixture), unit_timeout)
    assert r.returncode == 1, (r.returncode, r.out)
    assert final_line(r.out) == final, r.out
    for w in why:
        assert w in r.out, (w, r.out)
    return r


def test_run_tests_counts_a_clean_unit_binary_as_passed():
    r = run_tests(unit_tree("good", "log_error", capture=("log_error",)))
    assert r.returncode == 0, r.out
    assert final_line(r.out) == "2 passed, 0 failed", r.out
    assert "[error]" not in r.out, r.out        # captured by llmr_log_hook


def test_unit_check_outside_a_test_fails():
    unit_refused("outside", "1 passed, 1 failed",
                 "check outside a test function (move it into a test run by T_RUN, or make "
                 "it a _Static_assert): sizeof(int) >= 2")


def test_unit_test_that_asserts_nothing_fails():
    unit_refused("no_check", "1 passed, 1 failed", "FAIL test_nothing: made no checks")


def test_unit_binary_that_runs_no_test_fails():
    unit_refused("no_run", "0 passed, 1 failed", "FAIL: no test ran")


def test_unit_binary_that_prints_an_error_line_fails():
    """Issue 9: passing unit tests printed [error] lines, which hid real ones."""
    unit_refused("log_error", "1 passed, 1 failed", "[error]",
                 "FAIL unit test_log_error: passed but printed an [error] line")


def test_unit_binary_that_exits_non_zero_after_its_summary_fails():
    unit_refused("exit_after", "1 passed, 1 failed",
                 'FAIL unit test_exit_after: exit status 23 after "1 passed, 0 failed"')


def test_unit_binary_without_a_summary_fails():
    unit_refused("no_summary", "0 passed, 1 failed",
                 'FAIL unit test_no_summary: no final "N passed, N failed" line (exit status 0)')


def test_unit_binary_past_unit_timeout_fails():
    r = unit_refused("slow", "0 passed, 1 failed", "ran past UNIT_TIMEOUT=1s",
                     "FAIL unit test_slow: no final", unit_timeout=1)
    assert "(exit status 124)" in r.out, r.out


def test_unit_source_without_its_binary_fails():
    d = unit_tree("good")
    shutil.copy(os.path.join(FIX, "unit", "good.c"),
                os.path.join(d, "tests", "unit", "test_unbuilt.c"))
    r = run_tests(d)
    assert r.returncode == 1, r.out
    assert final_line(r.out) == "1 passed, 1 failed", r.out
    assert "FAIL unit: build/tests/test_unbuilt not built (from tests/unit/test_unbuilt.c)" \
        in r.out, r.out


# ------------------------------------------------------------ check-layers.sh

def check_layers(edit=None):
    """`make check-layers` on a copy of the sources and scripts; edit(d) may
    change the copy first."""
    d = tmpdir()
    for sub in ("common", "conf", "shm", "worker", "master", "scripts"):
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(d, sub))
    shutil.copy(os.path.join(ROOT, "Makefile"), d)
    if edit:
        edit(d)
    r = subprocess.run(["make", "--no-print-directory", "check-layers"], cwd=d,
                       capture_output=True, text=True, timeout=120 * harness.SLOW)
    r.out = r.stdout + r.stderr
    return r


def test_check_layers_refuses_a_worker_internal_header_in_master_main():
    """master/main.c is compiled with -Iworker (it hands the master the worker's
    entry point), so the include paths cannot stop it from reaching
    worker_internal.h; check-layers reads its includes instead."""
    r = check_layers()
    assert r.returncode == 0, r.out
    assert "master/main.c includes nothing of worker/ but worker.h: ok" in r.out, r.out

    def include_internal(d):
        path = os.path.join(d, "master", "main.c")
        text = open(path).read()
        assert '#include "worker.h"' in text
        with open(path, "w") as f:
            f.write(text.replace('#include "worker.h"',
                                 '#include "worker_internal.h"\n#include "worker.h"', 1))
    r = check_layers(include_internal)
    assert r.returncode != 0, r.out
    assert "master/main.c may include worker.h only of worker/'s headers; it includes: " \
        "worker_internal.h" in r.out, r.out
