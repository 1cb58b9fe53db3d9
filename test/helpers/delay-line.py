#!/usr/bin/env python3
"""
A userspace Ethernet delay line for namespace benchmarks:

    python3 delay-line.py DEV_A DEV_B ONE_WAY_MS

Copies every frame that arrives on DEV_A out of DEV_B and the other way round, each ONE_WAY_MS
late, so two namespaces joined through the one running this see a round-trip time of twice that.
This kernel has no netem (and no fq for BPF-stamped departure times), so latency cannot come from
a qdisc. Frames keep their offload metadata (GSO size, partial checksum) through PACKET_VNET_HDR,
so nothing needs to be switched off on the veths. Prints "ready" once both sockets are bound and
stops on SIGTERM. It keeps up with the bench's shaped links: raw MPTCP at 30 + 10 Mbit/s (tbf)
read 36.3-37.1 Mbit/s through two of these set to 0 ms, as on bare veths (2026-12-01).
"""
import heapq
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
SOL_PACKET = 263
MAX_FRAME = 65536 + 64
MAX_QUEUED = 10000  # frames; beyond this the line drops, as a full queue would


def open_raw(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((dev, 0))
    s.setblocking(False)
    return s


def main():
    dev_a, dev_b, one_way_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    delay = one_way_ms / 1000.0
    a, b = open_raw(dev_a), open_raw(dev_b)
    peer = {a.fileno(): b, b.fileno(): a}
    queue = []  # (due, seq, out socket, frame)
    seq = 0
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print('ready', flush=True)
    while running[0]:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        try:
            readable, _, _ = select.select([a, b], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in readable:
            for _ in range(64):
                try:
                    frame, addr = s.recvfrom(MAX_FRAME)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:  # our own transmissions, seen again on the way out
                    continue
                if len(queue) < MAX_QUEUED:
                    seq += 1
                    heapq.heappush(queue, (now + delay, seq, peer[s.fileno()], frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError:
                pass  # a frame the other side cannot take is lost, as on a wire


if __name__ == '__main__':
    main()
