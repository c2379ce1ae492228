"""Tests of tools/bench.d/tapfwd.c, the bench's floor (two TAPs joined by one blocking read and write per frame),
run for real between two network namespaces of their own (root only; skipped with a message otherwise).

Network safety: the namespaces are vx-<run id>-fa / -fb; their only link is the pair of TAPs that tapfwd joins,
with 10.x addresses. tapfwd is stopped by its PID.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "bench.d" / "tapfwd.c"
ADDRESSES = ["10.78.0.1", "10.78.0.2"]
MTU = 1450


def run(*argv, check=True, timeout=20):
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


class CompiledTapfwd(unittest.TestCase):
    """Compiles tapfwd.c once per test class, warnings as errors, into a scratch directory removed afterwards."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="vx-tapfwd-test-")
        cls.tapfwd = os.path.join(cls.scratch, "tapfwd")
        run("gcc", "-O2", "-Wall", "-Werror", "-pthread", "-o", cls.tapfwd, str(SOURCE), timeout=120)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.scratch, ignore_errors=True)


@unittest.skipUnless(shutil.which("gcc"), "tapfwd tests need gcc; skipped")
class TapfwdArgumentTests(CompiledTapfwd):
    def test_wrong_argument_count_prints_usage_and_exits_2(self):
        for argv in ([], ["only-one"], ["a", "b", "c"]):
            with self.subTest(argv=argv):
                result = run(self.tapfwd, *argv, check=False)
                self.assertEqual(result.returncode, 2)
                self.assertIn("usage: tapfwd TAP0 TAP1", result.stderr)

    def test_a_name_longer_than_a_device_name_is_refused(self):
        result = run(self.tapfwd, "a" * 16, "b", check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("device name too long", result.stderr)


@unittest.skipUnless(os.geteuid() == 0, "tapfwd forwarding tests need root (network namespaces); skipped")
@unittest.skipUnless(shutil.which("gcc") and shutil.which("ip") and shutil.which("ping"),
                     "tapfwd forwarding tests need gcc, iproute2 and ping; skipped")
class TapfwdForwardingTests(CompiledTapfwd):
    def setUp(self):
        run_id = secrets.token_hex(3)
        self.namespaces = [f"vx-{run_id}-fa", f"vx-{run_id}-fb"]
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            self.addCleanup(run, "ip", "netns", "delete", ns, check=False)
        # tapfwd makes both TAPs in the first namespace; the second one moves, as the bench moves each to its
        # container: the file descriptors keep working across the move.
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespaces[0], self.tapfwd, "ft0", "ft1"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.stop)
        self.assertEqual(self.process.stdout.readline().strip(), "ready")
        run("ip", "-n", self.namespaces[0], "link", "set", "ft1", "netns", self.namespaces[1])
        for i, ns in enumerate(self.namespaces):
            run("ip", "-n", ns, "link", "set", f"ft{i}", "name", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "mtu", str(MTU), "up")
            run("ip", "-n", ns, "addr", "add", f"{ADDRESSES[i]}/24", "dev", "eth0")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)

    def ping(self, source, size=56, count=3):
        """Pings the other namespace's address from namespace `source` with don't-fragment set: a frame that lost
        bytes on the way, or did not cross, leaves it without a reply."""
        return run("ip", "netns", "exec", self.namespaces[source], "ping", "-n", "-c", str(count), "-i", "0.2",
                   "-W", "1", "-M", "do", "-s", str(size), ADDRESSES[1 - source], check=False, timeout=15)

    def test_frames_cross_both_ways(self):
        for source in (0, 1):  # ARP and ICMP in both directions: both threads forward
            with self.subTest(source=source):
                result = self.ping(source)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_a_full_mtu_frame_crosses_whole(self):
        result = self.ping(0, size=MTU - 28)  # 20 IPv4 + 8 ICMP: a frame of MTU + 14 bytes
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("3 received", result.stdout)

    def test_a_receiver_that_is_down_drops_frames_and_forwarding_goes_on(self):
        run("ip", "-n", self.namespaces[1], "link", "set", "eth0", "down")  # writes to its TAP now fail (EIO)
        self.assertNotEqual(self.ping(0, count=2).returncode, 0)
        self.assertIsNone(self.process.poll(), "tapfwd must survive a failed write")
        run("ip", "-n", self.namespaces[1], "link", "set", "eth0", "up")
        run("ip", "-n", self.namespaces[1], "addr", "replace", f"{ADDRESSES[1]}/24", "dev", "eth0")
        result = self.ping(0)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
