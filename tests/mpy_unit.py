# Runs the shared unit tests (plain functions with assert, no pytest) on the MicroPython
# unix port: `micropython tests/mpy_unit.py test_message test_block ...`.
# Prints one line per test and a closing "N passed, N failed" line; exits 1 on failure.
import sys

def run(names):
    passed = failed = 0
    for name in names:
        mod = __import__(name)
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            try:
                fn()
                passed += 1
                print("PASS %s.%s" % (name, attr))
            except Exception as e:  # report every failure, keep going
                failed += 1
                print("FAIL %s.%s: %s: %s" % (name, attr, type(e).__name__, e))
                sys.print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    return failed


sys.exit(1 if run(sys.argv[1:]) else 0)
