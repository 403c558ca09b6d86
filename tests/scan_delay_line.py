#!/usr/bin/env python3
"""A slow, jittery link in user space, for kernels without sch_netem.

Creates two TUN devices, moves each into a network namespace, and relays
IPv4 packets between them, holding each one for DELAY ± JITTER milliseconds
(uniformly drawn per packet, so packets reorder as on netem with jitter).
The kernel in each namespace does all the rest: routing, answering, dropping.

    scan_delay_line.py TUN_A NETNS_A TUN_B NETNS_B DELAY_MS JITTER_MS

Prints "ready" once both ends are up, then relays until stdin closes (its
parent is gone) or it is signalled. Python's standard library only.
"""

import fcntl
import heapq
import os
import random
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main() -> None:
    tun_a, ns_a, tun_b, ns_b = sys.argv[1:5]
    delay, jitter = float(sys.argv[5]) / 1000, float(sys.argv[6]) / 1000
    fds = {}
    for tun, ns in ((tun_a, ns_a), (tun_b, ns_b)):
        fds[tun] = open_tun(tun)
        # The open descriptor stays attached to the device in its new namespace.
        subprocess.run(["ip", "link", "set", tun, "netns", ns], check=True)
        # A queue deep enough that bursts wait here instead of being dropped.
        subprocess.run(["ip", "-n", ns, "link", "set", tun, "txqueuelen", "100000", "up"], check=True)
    a, b = fds[tun_a], fds[tun_b]
    other = {a: b, b: a}
    held = []  # (due, sequence, fd to write, packet)
    sequence = 0
    print("ready", flush=True)
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 1.0
        readable, _, _ = select.select([a, b, sys.stdin], [], [], timeout)
        if sys.stdin in readable and not sys.stdin.buffer.read1(1):
            return
        now = time.monotonic()
        for fd in readable:
            if fd is sys.stdin:
                continue
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                due = now + delay + random.uniform(-jitter, jitter)
                heapq.heappush(held, (due, sequence, other[fd], packet))
                sequence += 1
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, fd, packet = heapq.heappop(held)
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the other end went away or refused it: a lost packet


if __name__ == "__main__":
    main()
