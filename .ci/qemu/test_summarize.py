#!/usr/bin/env python3
"""Tests of summarize.py: runs it, as run-matrix.sh and .ci/test do, on console logs of a
clean guest, a guest that panicked, a guest that hung, and a guest retried after the
emulator's text-poke fault, and checks the totals it prints and its exit status; and checks
that what markers.sh prints (the guests' /init and run-host.sh print every marker with it)
is what summarize.py reads.

Run by .ci/test: python3 -m unittest discover -s .ci/qemu -p 'test_*.py'
"""
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import summarize  # noqa: E402

BINARIES = "collector,iomonitor,toolkit,reclaim"


def result(passed, failed=0):
    word = "ok" if failed == 0 else "FAILED"
    return (f"test result: {word}. {passed} passed; {failed} failed; 0 ignored; 0 measured; "
            f"0 filtered out; finished in 1.00s")


def binary(name, passed, failed=0, rc=None):
    rc = (101 if failed else 0) if rc is None else rc
    return [f"KTM-BEGIN {name}", f"running {passed + failed} tests",
            "KTM-MATRIX\tktm_sys_read_latency_seconds\ttracepoint pass",
            result(passed, failed), f"KTM-END {name} rc={rc}"]


BOOT = ["# qemu-system-x86_64 ...", "KTM-BOOT 6.12.57+deb13-cloud-amd64 label=6.12",
        "KTM-MEM MemTotal:996372 kB MemAvailable:872940 kB "]

CLEAN = BOOT + binary("collector", 4) + binary("iomonitor", 5) + binary("toolkit", 7) + \
    binary("reclaim", 2) + ["KTM-DONE", "reboot: Power down"]

# The oops of issue 15: int3 in kernel text, bpf_prog_load, the panic; iomonitor never ends.
TEXT_POKE_OOPS = [
    "[   21.113206] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
    "[   21.113880] CPU: 1 UID: 0 PID: 301 Comm: iomonitor Not tainted 6.12.57+deb13-cloud-amd64 #1",
    "[   21.114611] RIP: 0010:bpf_prog_alloc+0xc/0x30",
    "[   21.115240] Code: 90 90 90 90 90 90 90 90 0f 1f 44 00 00 cc 0a 89 f8 ...",
    "[   21.120000]  bpf_prog_load+0x13b/0xb30",
    "[   21.130000] Kernel panic - not syncing: Fatal exception in interrupt",
    "[   21.131000] Kernel Offset: disabled",
]
PANICKED = BOOT + binary("collector", 4) + ["KTM-BEGIN iomonitor", "running 5 tests",
                                           "test read_and_pread_latency_count_exactly ..."] + TEXT_POKE_OOPS

# Another kind of oops: not the emulator's fault, never retried.
NULL_DEREF = BOOT + ["KTM-BEGIN collector",
                     "[    9.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
                     "[    9.000100] Oops: 0000 [#1] PREEMPT SMP NOPTI",
                     "[    9.000200] RIP: 0010:some_function+0x10/0x40",
                     "[    9.000300] Kernel panic - not syncing: Fatal exception"]

HUNG = BOOT + binary("collector", 4) + ["KTM-BEGIN iomonitor", "running 5 tests",
                                       "test page_cache_misses_and_adds_match_mincore ..."]


class Logs:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.n = 0

    def add(self, column, lines, **meta):
        self.n += 1
        path = os.path.join(self.dir.name, f"{self.n:02d}-{column}.log")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        meta = {"column": column, "kind": "guest", "label": "6.12", "wall_s": "30.0", "timed_out": "0",
                "binaries": BINARIES, "release": "6.12.57+deb13-cloud-amd64", **meta}
        with open(path + ".meta", "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in meta.items()))
        return path

    def summarize(self, *logs):
        md = os.path.join(self.dir.name, "matrix.md")
        p = subprocess.run([sys.executable, os.path.join(HERE, "summarize.py"), "--markdown", md, *logs],
                           capture_output=True, text=True)
        matrix = [l for l in p.stdout.splitlines() if l.startswith("matrix: ")]
        with open(md) as f:
            return p.returncode, matrix[-1], p.stdout, f.read()


class Judge(unittest.TestCase):
    def setUp(self):
        self.logs = Logs()
        self.addCleanup(self.logs.dir.cleanup)

    def test_clean_guest_counts_its_tests(self):
        rc, line, _, _ = self.logs.summarize(self.logs.add("6.12", CLEAN))
        self.assertEqual((rc, line), (0, "matrix: 18 passed, 0 failed"))

    def test_panicked_guest_counts_every_binary_that_did_not_report(self):
        # iomonitor (begun, never ended), toolkit and reclaim (never begun): 3 failed.
        rc, line, out, _ = self.logs.summarize(self.logs.add("6.12", PANICKED))
        self.assertEqual((rc, line), (1, "matrix: 4 passed, 3 failed"))
        self.assertIn("PANIC: ", out)

    def test_hung_guest_counts_every_binary_that_did_not_report(self):
        rc, line, out, _ = self.logs.summarize(self.logs.add("6.12", HUNG, timed_out="1", wall_s="600.0"))
        self.assertEqual((rc, line), (1, "matrix: 4 passed, 3 failed"))
        self.assertIn("TIMEOUT after 600.0s in iomonitor", out)

    def test_killed_binary_without_result_counts_one(self):
        lines = BOOT + binary("collector", 4) + ["KTM-BEGIN iomonitor", "Killed", "KTM-END iomonitor rc=137"] + \
            binary("toolkit", 7) + binary("reclaim", 2) + ["KTM-DONE"]
        rc, line, _, _ = self.logs.summarize(self.logs.add("6.12", lines))
        self.assertEqual((rc, line), (1, "matrix: 13 passed, 1 failed"))

    def test_failed_test_counts_as_reported(self):
        lines = BOOT + binary("collector", 4) + binary("iomonitor", 3, 2) + binary("toolkit", 7) + \
            binary("reclaim", 2) + ["KTM-DONE"]
        rc, line, _, _ = self.logs.summarize(self.logs.add("6.12", lines))
        self.assertEqual((rc, line), (1, "matrix: 16 passed, 2 failed"))

    def test_all_together(self):
        logs = [self.logs.add("5.10", CLEAN), self.logs.add("6.12", PANICKED),
                self.logs.add("6.12 -fentry", HUNG, timed_out="1"), self.logs.add("host", CLEAN, kind="host")]
        rc, line, _, _ = self.logs.summarize(*logs)
        self.assertEqual((rc, line), (1, "matrix: 44 passed, 6 failed"))

    def test_retried_guest_says_so_in_summary_and_cell(self):
        rc, line, out, md = self.logs.summarize(self.logs.add("6.12", CLEAN, retried="emulator text-poke fault"))
        self.assertEqual((rc, line), (0, "matrix: 18 passed, 0 failed"))
        self.assertIn("ok (passed on retry: emulator text-poke fault)", out)
        self.assertIn("6.12.57+deb13-cloud-amd64 (passed on retry: emulator text-poke fault)", md)

    def test_retry_reasons(self):
        meta = {"timed_out": "0"}
        self.assertEqual(summarize.retry_reason(PANICKED, meta), "emulator text-poke fault")
        # Began a test binary: a hang or an oops there is a finding, never retried.
        self.assertIsNone(summarize.retry_reason(HUNG, {"timed_out": "1"}))
        self.assertIsNone(summarize.retry_reason(NULL_DEREF, meta))
        # The init's own deterministic failure: never retried.
        self.assertIsNone(summarize.retry_reason(BOOT + ["KTM-FATAL no virtio disk /dev/vda"], meta))
        # Never reached the first test: retried, saying what the first boot showed.
        self.assertEqual(summarize.retry_reason(["# qemu-system-x86_64 ...", "[    3.2] Kernel panic - not syncing: VFS: Unable to mount root"], meta),
                         "guest never reached its first test (kernel: Kernel panic - not syncing: VFS: Unable to mount root)")
        self.assertEqual(summarize.retry_reason(["# qemu-system-x86_64 ..."], {"timed_out": "1", "wall_s": "600.2"}),
                         "guest never reached its first test (timed out after 600.2s)")
        self.assertEqual(summarize.retry_reason(BOOT, meta), "guest never reached its first test (booted, then stopped)")

    def test_boot_retry_says_why_in_summary(self):
        why = "guest never reached its first test (timed out after 600.2s)"
        rc, line, out, md = self.logs.summarize(self.logs.add("6.12", CLEAN, retried=why))
        self.assertEqual((rc, line), (0, "matrix: 18 passed, 0 failed"))
        self.assertIn(f"ok (passed on retry: {why})", out)
        self.assertIn(f"retried: 6.12: first boot: {why}; passed on retry", out)

    def test_failed_retry_fails(self):
        rc, line, out, md = self.logs.summarize(self.logs.add("6.12", PANICKED, retried="emulator text-poke fault"))
        self.assertEqual((rc, line), (1, "matrix: 4 passed, 3 failed"))
        self.assertIn("the retry failed too", out)
        self.assertNotIn("passed on retry", md)


class EmulatorFault(unittest.TestCase):
    def test_signature(self):
        self.assertTrue(summarize.emulator_fault(PANICKED))
        boot_oops = BOOT[:1] + [
            "[    2.812000] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "[    2.812100] RIP: 0010:sched_clock_cpu+0x9/0x1a0",
            "[    2.830000] Kernel panic - not syncing: Fatal exception in interrupt"]
        self.assertTrue(summarize.emulator_fault(boot_oops))

    def test_not_the_signature(self):
        self.assertFalse(summarize.emulator_fault(CLEAN))
        self.assertFalse(summarize.emulator_fault(HUNG))
        self.assertFalse(summarize.emulator_fault(NULL_DEREF))
        # int3 in user space (a debugger trap) is no kernel-text fault.
        self.assertFalse(summarize.emulator_fault(["Oops: int3: 0000 [#1]", "RIP: 0033:0x401000",
                                                   "Kernel panic - not syncing: Fatal exception"]))
        # An int3 oops that did not panic is not the signature either.
        self.assertFalse(summarize.emulator_fault(TEXT_POKE_OOPS[:4]))


class Markers(unittest.TestCase):
    """markers.sh, sourced by the guest's /init (busybox sh) and run-host.sh (bash), against
    summarize.py: every marker as printed is read back."""

    MARKERS = os.path.join(HERE, "markers.sh")

    def shells(self):
        found = [[sh] for sh in ("sh", "bash") if shutil.which(sh)]
        if shutil.which("busybox"):
            found.append(["busybox", "sh"])
        return found

    def judge(self, shell, script, binaries):
        out = subprocess.run(shell + ["-c", f'. "{self.MARKERS}"; {script}'], capture_output=True, text=True,
                             check=True).stdout
        logs = Logs()
        self.addCleanup(logs.dir.cleanup)
        path = logs.add("6.12", out.splitlines(), binaries=binaries, release="?")
        return summarize.judge(path), out

    def test_a_run_as_printed(self):
        script = ('ktm_env KTM_DISABLE_FENTRY=1; ktm_boot 6.12; ktm_mem; ktm_warn "no bpffs"; '
                  'ktm_begin collector; echo "' + result(4) + '"; ktm_end collector 0; '
                  'ktm_begin reclaim; echo Killed; ktm_end reclaim 137; ktm_done')
        for shell in self.shells():
            with self.subTest(shell=" ".join(shell)):
                r, out = self.judge(shell, script, "collector,reclaim")
                self.assertIn("KTM-ENV KTM_DISABLE_FENTRY=1\n", out)
                self.assertEqual(r["release"], platform.release())
                self.assertRegex(r["mem"], r"^\d+ MiB \(\d+ available\)$")
                self.assertEqual(r["begun"], ["collector", "reclaim"])
                self.assertEqual(r["ends"], {"collector": 0, "reclaim": 137})
                self.assertTrue(r["done"])
                self.assertEqual((r["passed"], r["failed"]), (4, 1))
                self.assertEqual(r["problems"], ["FAILED: reclaim (rc=137)"])

    def test_fatal(self):
        for shell in self.shells():
            with self.subTest(shell=" ".join(shell)):
                r, _ = self.judge(shell, 'ktm_boot 6.12; ktm_fatal "no virtio disk /dev/vda"', "collector")
                self.assertEqual(r["fatal"], "no virtio disk /dev/vda")
                self.assertIn("FATAL: no virtio disk /dev/vda", r["problems"])
                self.assertEqual(r["failed"], 1)


class Closing(unittest.TestCase):
    """The closing line of .ci/test over its steps."""

    def closing(self, steps):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        rows = []
        for i, (name, kind, rc, lines) in enumerate(steps):
            log = os.path.join(d.name, f"{i}.log")
            with open(log, "w") as f:
                f.write("\n".join(lines) + "\n")
            rows.append(f"{name}\t{kind}\t{rc}\t{log}\n")
        path = os.path.join(d.name, "steps")
        with open(path, "w") as f:
            f.write("".join(rows))
        p = subprocess.run([sys.executable, os.path.join(HERE, "summarize.py"), "--closing", path],
                           capture_output=True, text=True)
        self.stdout = p.stdout
        return p.returncode, p.stdout.splitlines()[-1]

    CARGO_OK = ["     Running unittests src/lib.rs (target/debug/deps/ktm-0878624f6552340e)", result(135),
                "     Running tests/iomonitor.rs (target/debug/deps/iomonitor-fec41c62a00a1cc8)", result(5),
                "     Running benches/overhead.rs (target/debug/deps/overhead-7819d439eb1f3d1b)"]

    def test_every_step_counts(self):
        matrix = ["[6.12]   21.1s Oops: int3", result(4), "matrix: 137 passed, 2 failed"]
        rc, line = self.closing([("fmt", "check", 0, []), ("clippy", "check", 0, []),
                                 ("host-tests", "libtest", 0, self.CARGO_OK),
                                 ("summarize-tests", "unittest", 0, ["Ran 12 tests in 0.5s", "", "OK"]),
                                 ("matrix", "matrix", 1, matrix)])
        # The matrix's own line, not the guests' `test result:` lines streamed above it.
        self.assertEqual((rc, line), (1, "total: 289 passed, 2 failed"))

    def test_clean(self):
        rc, line = self.closing([("host-tests", "libtest", 0, self.CARGO_OK),
                                 ("matrix", "matrix", 0, ["matrix: 137 passed, 0 failed"])])
        self.assertEqual((rc, line), (0, "total: 277 passed, 0 failed"))

    def test_failing_host_test(self):
        cargo = self.CARGO_OK[:2] + [
            "     Running tests/iomonitor.rs (target/debug/deps/iomonitor-fec41c62a00a1cc8)",
            "test page_cache_misses_and_adds_match_mincore ... FAILED", result(4, 1),
            "error: test failed, to rerun pass `--test iomonitor`"]
        rc, line = self.closing([("host-tests", "libtest", 101, cargo)])
        self.assertEqual((rc, line), (1, "total: 139 passed, 1 failed"))

    def test_crashed_host_binary(self):
        cargo = self.CARGO_OK[:2] + [
            "     Running tests/iomonitor.rs (target/debug/deps/iomonitor-fec41c62a00a1cc8)",
            "error: test failed, to rerun pass `--test iomonitor`",
            "Caused by:", "  process didn't exit successfully: `...` (signal: 11, SIGSEGV: invalid memory reference)"]
        rc, line = self.closing([("host-tests", "libtest", 101, cargo)])
        self.assertEqual((rc, line), (1, "total: 135 passed, 1 failed"))

    def test_failing_step_without_tests_counts_one(self):
        rc, line = self.closing([("fmt", "check", 1, ["Diff in src/lib.rs"]),
                                 ("host-tests", "libtest", 101, ["error[E0425]: cannot find value"]),
                                 ("matrix", "matrix", 2, ["run-matrix: bad usage"])])
        self.assertEqual((rc, line), (1, "total: 0 passed, 3 failed"))

    def test_unittest_failures_and_other_steps(self):
        rc, line = self.closing([("summarize-tests", "unittest", 1, ["Ran 10 tests in 0.1s", "", "FAILED (failures=2, errors=1)"]),
                                 ("go", "gotest", 1, ["--- PASS: TestA (0.00s)", "--- FAIL: TestB (0.00s)", "FAIL\tpkg\t0.1s"]),
                                 ("other", "counts", 0, ["3 passed, 0 failed"])])
        self.assertEqual((rc, line), (1, "total: 11 passed, 4 failed"))

    def test_digest_names_what_failed_above_the_totals(self):
        matrix = ["[6.1]   5.0s KTM-BOOT 6.1", "", "===== arm64 6.12: TIMEOUT after 600s; no KTM-END for pod",
                  "----- arm64 6.12: last 60 lines of the log", "guest line 1", "rcu: INFO: rcu_sched self-detected stall",
                  "", "Runs:", "column | kernel", "failed runs: arm64 6.12", "matrix: 90 passed, 1 failed"]
        cargo = self.CARGO_OK[:2] + [
            "     Running tests/iomonitor.rs (target/debug/deps/iomonitor-fec41c62a00a1cc8)",
            "test page_cache_misses_and_adds_match_mincore ... FAILED", result(4, 1),
            "error: test failed, to rerun pass `--test iomonitor`"]
        rc, line = self.closing([("host-tests", "libtest", 101, cargo), ("matrix", "matrix", 1, matrix),
                                 ("go", "gotest", 0, ["--- PASS: TestA (0.00s)"])])
        self.assertEqual((rc, line), (1, "total: 230 passed, 2 failed"))
        out = self.stdout.splitlines()
        digest = out[:out.index("step host-tests: rc=101, 139 passed, 1 failed")]
        self.assertIn("test page_cache_misses_and_adds_match_mincore ... FAILED", digest)
        self.assertIn("===== arm64 6.12: TIMEOUT after 600s; no KTM-END for pod", digest)
        self.assertIn("rcu: INFO: rcu_sched self-detected stall", digest)
        self.assertIn("failed runs: arm64 6.12", digest)
        self.assertNotIn("--- what failed in step go:", digest)

    def test_no_digest_when_clean(self):
        rc, line = self.closing([("host-tests", "libtest", 0, self.CARGO_OK)])
        self.assertEqual(self.stdout.splitlines()[0], "step host-tests: rc=0, 140 passed, 0 failed")


if __name__ == "__main__":
    unittest.main()
