"""Runs every test_* function of tests/integration/test_*.py, one at a time,
and ends with one line: "N passed, N failed"."""
import argparse
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    os.environ["LLMR_BUILD"] = os.path.abspath(args.build)
    sys.path.insert(0, HERE)
    import harness
    passed = failed = 0
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        mod = importlib.import_module(fn[:-3])
        for name in [n for n in dir(mod) if n.startswith("test_")]:
            full = "%s.%s" % (fn[:-3], name)
            if args.k not in full:
                continue
            t0 = time.monotonic()
            err = None
            try:
                getattr(mod, name)()
            except Exception:
                err = traceback.format_exc()
            errors = harness.cleanup_all()
            if errors and err is None:
                err = "\n".join(errors)
            took = time.monotonic() - t0
            if err is None:
                passed += 1
                print("PASS %-60s %6.2fs" % (full, took), flush=True)
            else:
                failed += 1
                print("FAIL %-60s %6.2fs\n%s" % (full, took, err), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
