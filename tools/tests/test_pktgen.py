"""Tests of tools/bench.d/pktgen.c, the bench's 64-byte sender and counter, run for real between two network
namespaces of their own (root only; skipped with a message otherwise).

The receiving kernel checks the IPv4 header checksum and the UDP checksum of every frame before the counting
socket sees it, so a frame the AF_PACKET sender builds wrong is not counted and the count tests fail.
Network safety: the namespaces are vx-<run id>-pa / -pb, joined only by their own veth pair, with 10.x addresses.
"""

import json
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "bench.d" / "pktgen.c"
SENDER_IP, RECEIVER_IP, PORT = "10.77.0.1", "10.77.0.2", 9000
PAYLOAD = 18  # a 64-byte frame, as the bench sends


# Creates the TAP named argv[1] (IFF_TAP | IFF_NO_PI), says "open", and holds it without reading until stdin closes.
TAP_HOLDER = """
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))  # TUNSETIFF
print("open", flush=True)
sys.stdin.read()
"""


def run(*argv, check=True, timeout=20):
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@unittest.skipUnless(os.geteuid() == 0, "pktgen tests need root (network namespaces); skipped")
@unittest.skipUnless(shutil.which("gcc") and shutil.which("ip"), "pktgen tests need gcc and iproute2; skipped")
class PktgenTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="vx-pktgen-test-")
        cls.pktgen = os.path.join(cls.scratch, "pktgen")
        run("gcc", "-O2", "-Wall", "-Werror", "-o", cls.pktgen, str(SOURCE), timeout=120)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def setUp(self):
        run_id = secrets.token_hex(3)
        self.sender_ns, self.receiver_ns = f"vx-{run_id}-pa", f"vx-{run_id}-pb"
        for ns in (self.sender_ns, self.receiver_ns):
            run("ip", "netns", "add", ns)
            self.addCleanup(run, "ip", "netns", "delete", ns, check=False)
        run("ip", "-n", self.sender_ns, "link", "add", "pa0", "type", "veth", "peer", "name", "pb0",
            "netns", self.receiver_ns)
        for ns, dev, addr in ((self.sender_ns, "pa0", SENDER_IP), (self.receiver_ns, "pb0", RECEIVER_IP)):
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        link = json.loads(run("ip", "-j", "-n", self.receiver_ns, "link", "show", "dev", "pb0").stdout)
        self.receiver_mac = link[0]["address"]

    def start_receiver(self):
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", self.receiver_ns, self.pktgen, "recv", "--bind", RECEIVER_IP, "--port",
             str(PORT), "--seconds", "10", "--idle", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.addCleanup(self.stop, receiver)
        ready, _, _ = select.select([receiver.stdout], [], [], 10)
        self.assertTrue(ready and "listening" in receiver.stdout.readline(), "receiver did not start")
        return receiver

    @staticmethod
    def stop(process):
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)

    def send(self, *extra):
        size = [] if "--size" in extra else ["--size", str(PAYLOAD)]
        result = run("ip", "netns", "exec", self.sender_ns, self.pktgen, "send", "--to", RECEIVER_IP, "--port",
                     str(PORT), *size, "--batch", "64", "--seconds", "5", *extra, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def count(self, receiver):
        out, _ = receiver.communicate(timeout=20)
        return json.loads(out.strip().splitlines()[-1])

    def test_packet_sender_frames_pass_the_receivers_checksums_and_all_arrive(self):
        receiver = self.start_receiver()
        sent = self.send("--packet", "pa0", "--dst-mac", self.receiver_mac, "--max-packets", "3000")
        counted = self.count(receiver)
        self.assertEqual(sent["sender"], "packet")
        self.assertEqual(sent["packets"], 3000)
        self.assertEqual(counted["packets"], 3000)
        self.assertEqual(counted["bytes"], 3000 * PAYLOAD)

    def test_packet_sender_uses_an_explicit_source_address(self):
        # A frame from an address the receiver has no route back to still arrives: the receiver is told the
        # source, it does not look it up. Here --from names another host of the subnet.
        receiver = self.start_receiver()
        sent = self.send("--packet", "pa0", "--dst-mac", self.receiver_mac, "--from", "10.77.0.9",
                         "--max-packets", "500")
        self.assertEqual((sent["packets"], self.count(receiver)["packets"]), (500, 500))

    def test_packet_sender_builds_full_size_frames_whole(self):
        # The largest payload pktgen takes, 1472 bytes, makes a 1500-byte IP packet (the veth's MTU) in a 1514-byte
        # frame. Frames were once built in 1500-byte rows: each one's tail was overwritten by the next one's
        # header, and the receiver's UDP checksum dropped all but the last of every batch.
        receiver = self.start_receiver()
        sent = self.send("--packet", "pa0", "--dst-mac", self.receiver_mac, "--size", "1472", "--max-packets", "300")
        counted = self.count(receiver)
        self.assertEqual((sent["packets"], counted["packets"], counted["bytes"]), (300, 300, 300 * 1472))

    def test_udp_sender_counts_what_it_sent(self):
        receiver = self.start_receiver()
        sent = self.send("--max-packets", "2000")
        self.assertEqual(sent["sender"], "udp")
        self.assertEqual((sent["packets"], self.count(receiver)["packets"]), (2000, 2000))

    def open_unread_tap(self, name, queue_length):
        """A TAP in the sender's namespace, held open by a child process that never reads it: the kernel queues
        frames sent to it until `queue_length` of them wait, then refuses more (ENOBUFS). Returns the child."""
        holder = subprocess.Popen(
            ["ip", "netns", "exec", self.sender_ns, "python3", "-c", TAP_HOLDER, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(holder.communicate, timeout=10)  # closing its stdin ends it, and the TAP with it
        ready, _, _ = select.select([holder.stdout], [], [], 10)
        self.assertTrue(ready and "open" in holder.stdout.readline(), "the TAP holder did not start")
        run("ip", "-n", self.sender_ns, "link", "set", name, "txqueuelen", str(queue_length), "up")
        run("ip", "-n", self.sender_ns, "addr", "add", "10.77.1.1/24", "dev", name)
        return holder

    def test_a_full_queue_pauses_the_sender_instead_of_spinning(self):
        # Nothing reads the TAP, so once 8 frames wait every send meets a full queue. With a 2 ms pause a 1 s run
        # can make at most about 500 calls; spinning (pause 0, sched_yield between tries) makes thousands. The
        # bench's sender shares the cores with the datapath it drives, so a spinning sender would take the CPU the
        # datapath needs to drain the queue.
        self.open_unread_tap("tq0", 8)
        common = ("--packet", "tq0", "--dst-mac", "02:00:00:00:00:01", "--seconds", "1")
        paused = self.send(*common, "--full-sleep-us", "2000")
        self.assertLessEqual(paused["packets"], 8, paused)  # the kernel's own frames (IPv6 DAD, MLD) may take some
        self.assertGreater(paused["queue_full"], 100, paused)
        self.assertLess(paused["calls"], 600, paused)
        spinning = self.send(*common, "--full-sleep-us", "0")
        self.assertEqual(spinning["packets"], 0, "the queue is still full from the first run")
        self.assertGreater(spinning["calls"], 5 * paused["calls"], (spinning, paused))

    def test_bad_arguments_exit_2_with_usage(self):
        for extra in (["--packet", "pa0"],  # no --dst-mac
                      ["--dst-mac", "02:00:00:00:00:01"],  # no --packet
                      ["--packet", "pa0", "--dst-mac", "02:00:00:00:00"],  # short MAC
                      ["--packet", "pa0", "--dst-mac", "02:00:00:00:00:01", "--from", "10.77.0"],
                      ["--full-sleep-us", "-1"]):
            result = run("ip", "netns", "exec", self.sender_ns, self.pktgen, "send", "--to", RECEIVER_IP,
                         "--port", str(PORT), *extra, check=False)
            self.assertEqual(result.returncode, 2, extra)
            self.assertIn("usage:", result.stderr)

    def test_unknown_device_is_a_clear_error(self):
        result = run("ip", "netns", "exec", self.sender_ns, self.pktgen, "send", "--to", RECEIVER_IP, "--port",
                     str(PORT), "--packet", "nosuch0", "--dst-mac", "02:00:00:00:00:01", check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("nosuch0", result.stderr)


if __name__ == "__main__":
    unittest.main()
