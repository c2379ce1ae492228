"""Tests of tools/udp-tunnel-gso-check.py, run for real (root only; skipped with a message otherwise).

The script must give the verdict the kernel's TAP offloads call for (a burst that arrives whole exactly where
TUNSETOFFLOAD takes TUN_F_UDP_TUNNEL_GSO, exit 0; otherwise exit 1 and say so), and remove both namespaces it made
whatever the verdict.
"""

import os
import subprocess
import sys
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "udp-tunnel-gso-check.py"


def kernel_takes_udp_tunnel_gso():
    """Whether a TAP here accepts TUN_F_UDP_TUNNEL_GSO, asked in a namespace of the test's own."""
    namespace = f"vx-{os.getpid():x}-tq"
    probe = ("import fcntl, os, struct\n"
             "fd = os.open('/dev/net/tun', os.O_RDWR)\n"
             "fcntl.ioctl(fd, 0x400454CA, struct.pack('16sH', b'probe0', 0x0002 | 0x1000 | 0x4000))\n"
             "fcntl.ioctl(fd, 0x400454D0, 0x1 | 0x2 | 0x80)\n")
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", probe],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)


@unittest.skipUnless(os.geteuid() == 0, "udp-tunnel-gso-check tests need root (network namespaces); skipped")
class UDPTunnelGSOCheckTests(unittest.TestCase):
    def test_verdict_matches_the_kernels_offloads_and_nothing_is_left_behind(self):
        before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
        after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        self.assertFalse({name for name in after - before if name.startswith("vx-")}, "namespaces left behind")
        if kernel_takes_udp_tunnel_gso():
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("arrived whole: flags 0x1, gso_type 0x21, gso_size 1398", result.stdout)
        else:
            self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
            self.assertIn("did not arrive whole", result.stdout)


if __name__ == "__main__":
    unittest.main()
