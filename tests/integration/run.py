"""Runs every test_* function of tests/integration/test_*.py, one at a time,
and ends with one line: "N passed, N failed".

Nothing passes unseen.  Each of these is a failure of its own, counted in
that line: a file that does not import (a syntax error, an exception or a
failed assertion in module-level code), a file with no test function, a test
name defined twice in a file (the second definition silently replaces the
first), a test_ name that is not a plain function (a generator's body would
never run), a test that returns a value (a check that was meant to be
asserted), and a run in which no test matched -k.

Each test runs under its own deadline: harness.DEFAULT_TIMEOUT seconds, or
what @harness.timeout(s) gives it, times harness.SLOW (sanitizer builds).
Past it the test is interrupted with harness.TestTimeout, raised again every
few seconds until it gives up; then every process it started is stopped and
it fails, and the run goes on with the next test.  A test still running
GRACE_S after its deadline (stuck where no signal reaches it) ends the run:
its processes are killed and the final line counts it as failed."""
import argparse
import ast
import importlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
RERAISE_S = 5.0     # after the deadline, how often TestTimeout comes again
GRACE_S = 30.0      # after the deadline, when the watchdog ends the whole run


class Deadline:
    """Raises harness.TestTimeout in the main thread once `seconds` pass;
    GRACE_S later, a watchdog thread ends the run (runner.abort)."""

    def __init__(self, runner, seconds, what):
        self.runner, self.harness = runner, runner.harness
        self.seconds, self.what = seconds, what
        self.done = threading.Event()

    def _watch(self):
        if not self.done.wait(self.seconds + GRACE_S):
            self.runner.abort(self.what, self.seconds + GRACE_S)

    def _fire(self, signum, frame):
        raise self.harness.TestTimeout("%s ran past its deadline of %.0fs (harness.timeout; "
                                       "SLOW=%g)" % (self.what, self.seconds,
                                                     self.harness.SLOW))

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds, RERAISE_S)
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def defined_twice(path):
    """Top-level test names defined more than once in the file at path."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    seen, twice = set(), []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.name.startswith("test_"):
            if node.name in seen:
                twice.append("%s (again at line %d)" % (node.name, node.lineno))
            seen.add(node.name)
    return twice


def collect(mod):
    """(name, function, problem) for each test of mod, in name order."""
    out = []
    for name in sorted(n for n in dir(mod) if n.startswith("test_")):
        fn = getattr(mod, name)
        if getattr(fn, "__module__", mod.__name__) != mod.__name__:
            continue        # imported from another test file: it runs there
        problem = None
        if not inspect.isfunction(fn):
            problem = "%r is not a function" % (fn,)
        elif inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
            problem = "a generator or coroutine: calling it would not run its body"
        out.append((name, fn, problem))
    return out


class Runner:
    def __init__(self, harness, k):
        self.harness, self.k = harness, k
        self.passed = self.failed = 0

    def report(self, full, took, err):
        if err is None:
            self.passed += 1
            print("PASS %-60s %6.2fs" % (full, took), flush=True)
        else:
            self.failed += 1
            print("FAIL %-60s %6.2fs\n%s" % (full, took, err), flush=True)

    def abort(self, what, after):
        """From the watchdog thread: the test ignored TestTimeout."""
        for p in list(self.harness._procs):
            if p.p.poll() is None:
                p.p.kill()
        self.report(what, after, "still running %.0fs after its deadline, where "
                    "TestTimeout does not reach it: the run stops here" % GRACE_S)
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        os._exit(1)

    def guarded(self, what, seconds, fn):
        """Runs fn() under a deadline; returns a traceback, or None."""
        try:
            with Deadline(self, seconds, what):
                return fn()
        except KeyboardInterrupt:
            raise
        except BaseException:
            return traceback.format_exc()

    def run_test(self, full, fn, problem):
        h = self.harness
        t0 = time.monotonic()
        seconds = getattr(fn, "timeout", h.DEFAULT_TIMEOUT) * h.SLOW

        def call():
            rv = fn()
            if rv is not None:
                return "the test returned %r instead of asserting it" % (rv,)
            return None
        err = problem or self.guarded(full, seconds, call)
        errors = h.cleanup_all()
        if errors and err is None:
            err = "\n".join(errors)
        self.report(full, time.monotonic() - t0, err)

    def run_file(self, fn):
        modname = fn[:-3]
        t0 = time.monotonic()
        mod = None

        def load():
            nonlocal mod
            twice = defined_twice(os.path.join(HERE, fn))
            mod = importlib.import_module(modname)
            if twice:
                return "test names defined twice (only the last one runs): " + \
                    ", ".join(twice)
            return None
        err = self.guarded(modname + " (import)", self.harness.DEFAULT_TIMEOUT *
                           self.harness.SLOW, load)
        errors = self.harness.cleanup_all()     # what module-level code started
        err = err or ("\n".join(errors) if errors else None)
        tests = collect(mod) if mod is not None else []
        if err is None and not tests:
            err = "no test_ function in %s" % fn
        if err is not None:
            self.report("%s (file)" % modname, time.monotonic() - t0, err)
        for name, f, problem in tests:
            full = "%s.%s" % (modname, name)
            if self.k in full:
                self.run_test(full, f, problem)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    os.environ["LLMR_BUILD"] = os.path.abspath(args.build)
    sys.path.insert(0, HERE)
    import harness
    r = Runner(harness, args.k)
    try:
        for fn in sorted(os.listdir(HERE)):
            if fn.startswith("test_") and fn.endswith(".py"):
                r.run_file(fn)
    finally:                    # ^C included: leave no process behind
        harness.cleanup_all()
    if r.passed + r.failed == 0:
        r.report("(run)", 0.0, "no test matched -k %r" % args.k)
    print("%d passed, %d failed" % (r.passed, r.failed))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
