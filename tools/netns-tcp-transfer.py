#!/usr/bin/env python3
"""Bounded TCP transfer check for the netns system tests.

    netns-tcp-transfer.py recv --bind 10.0.0.2 --port 5201 --timeout 60
    netns-tcp-transfer.py send --to 10.0.0.2 --port 5201 --bytes 52428800 --seed 1 --timeout 60

The sender streams `--bytes` of deterministic pseudo-random data (Python's Mersenne Twister seeded with
`--seed`, so reruns send the same bytes) and the receiver hashes whatever arrives until EOF. Each side prints one
JSON line, {"role", "bytes", "sha256", "seconds"}, and the caller compares the two hashes. Both sides give up
after `--timeout` seconds (accept, connect retries and every socket operation are bounded), so a broken
datapath fails the test instead of hanging it.

Only addresses inside the caller's own network namespaces are ever used; this script does not pick them.
"""

import argparse
import hashlib
import json
import random
import socket
import sys
import time

CHUNK = 64 * 1024  # bytes per send/recv call: large enough that Python overhead stays small next to the copy


def receive(args):
    deadline = time.monotonic() + args.timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.bind, args.port))
        listener.listen(1)
        listener.settimeout(args.timeout)
        # Tell the caller we are listening (it waits for this line before starting the sender).
        print(json.dumps({"role": "recv", "listening": True}), flush=True)
        conn, _ = listener.accept()
    with conn:
        digest = hashlib.sha256()
        total = 0
        start = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"receive timed out after {total} bytes")
            conn.settimeout(remaining)
            data = conn.recv(CHUNK)
            if not data:
                break
            digest.update(data)
            total += len(data)
        seconds = time.monotonic() - start
    print(json.dumps({"role": "recv", "bytes": total, "sha256": digest.hexdigest(), "seconds": seconds}), flush=True)


def connect(args, deadline):
    # The receiver may still be starting: retry refused connections until the deadline, a few times a second.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"could not connect to {args.to}:{args.port}")
        try:
            return socket.create_connection((args.to, args.port), timeout=min(remaining, 5.0))
        except (ConnectionRefusedError, socket.timeout, OSError):
            time.sleep(0.2)


def send(args):
    deadline = time.monotonic() + args.timeout
    rng = random.Random(args.seed)
    digest = hashlib.sha256()
    conn = connect(args, deadline)
    with conn:
        start = time.monotonic()
        total = 0
        while total < args.bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"send timed out after {total} bytes")
            conn.settimeout(remaining)
            data = rng.randbytes(min(CHUNK, args.bytes - total))
            conn.sendall(data)
            digest.update(data)
            total += len(data)
        conn.shutdown(socket.SHUT_WR)
        # Wait for the receiver to close, so "seconds" covers delivery and not just the local socket buffer.
        conn.settimeout(max(deadline - time.monotonic(), 0.1))
        while conn.recv(CHUNK):
            pass
        seconds = time.monotonic() - start
    print(json.dumps({"role": "send", "bytes": total, "sha256": digest.hexdigest(), "seconds": seconds}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role", required=True)
    recv_parser = sub.add_parser("recv")
    recv_parser.add_argument("--bind", required=True)
    recv_parser.add_argument("--port", type=int, default=5201)
    recv_parser.add_argument("--timeout", type=float, default=60.0)
    send_parser = sub.add_parser("send")
    send_parser.add_argument("--to", required=True)
    send_parser.add_argument("--port", type=int, default=5201)
    send_parser.add_argument("--bytes", type=int, required=True)
    send_parser.add_argument("--seed", type=int, default=1)
    send_parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        receive(args) if args.role == "recv" else send(args)
    except Exception as error:  # one line on stderr and a non-zero exit; the Swift side shows both
        print(f"{args.role}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
