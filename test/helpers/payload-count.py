#!/usr/bin/env python3
"""
Counts the TCP payload that crosses network interfaces, by direction, independently of Braid:

    python3 payload-count.py DEV [DEV...]

Taps each device with an AF_PACKET socket (what tcpdump does), reads each frame's IPv4/IPv6 and TCP
headers and adds the segment's payload length (IP length minus IP and TCP headers) to the device's
rx or tx count. Frames the qdisc dropped are never transmitted and so never seen. Prints "ready"
once every socket is bound; on SIGTERM (or SIGINT) prints one JSON line
{"DEV": {"rx": bytes, "tx": bytes, "rxPackets": n, "txPackets": n, "drops": n}, ...} and exits.
"""
import json
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MSG_TRUNC = 0x20
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
HEAD = 160  # enough for Ethernet + IPv6 + TCP with options


def payload(frame, full_len):
    if len(frame) < 14:
        return None
    ethertype = struct.unpack('!H', frame[12:14])[0]
    off = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        ethertype = struct.unpack('!H', frame[16:18])[0]
        off = 18
    if ethertype == 0x0800:
        if len(frame) < off + 20:
            return None
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6:
            return None
        total = struct.unpack('!H', frame[off + 2:off + 4])[0] or (full_len - off)
        tcp = off + ihl
        ip_head = ihl
    elif ethertype == 0x86DD:
        if len(frame) < off + 40 or frame[off + 6] != 6:
            return None
        total = (struct.unpack('!H', frame[off + 4:off + 6])[0] + 40) if frame[off + 4:off + 6] != b'\0\0' else (full_len - off)
        tcp = off + 40
        ip_head = 40
    else:
        return None
    if len(frame) < tcp + 13:
        return None
    doff = (frame[tcp + 12] >> 4) * 4
    return max(0, total - ip_head - doff)


def main():
    devs = sys.argv[1:]
    socks = {}
    counts = {d: {'rx': 0, 'tx': 0, 'rxPackets': 0, 'txPackets': 0} for d in devs}
    for d in devs:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # A burst of 64 kB frames (GRO/GSO) must not overflow the queue: every dropped frame is a miscount.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
        s.bind((d, 0))
        s.setblocking(False)
        socks[s.fileno()] = (s, d)
    buf = bytearray(HEAD)
    running = [True]
    stop = lambda *_: running.__setitem__(0, False)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print('ready', flush=True)
    while running[0]:
        try:
            readable, _, _ = select.select([s for s, _ in socks.values()], [], [], 0.2)
        except InterruptedError:
            continue
        for s in readable:
            dev = socks[s.fileno()][1]
            for _ in range(256):
                try:
                    # MSG_TRUNC: the frame's real length, though only its head is copied.
                    full_len, addr = s.recvfrom_into(buf, HEAD, MSG_TRUNC)
                except BlockingIOError:
                    break
                frame = bytes(buf[:min(full_len, HEAD)])
                n = payload(frame, full_len)
                if n is None:
                    continue
                c = counts[dev]
                if addr[2] == PACKET_OUTGOING:
                    c['tx'] += n
                    c['txPackets'] += 1
                else:
                    c['rx'] += n
                    c['rxPackets'] += 1
    for s, d in socks.values():
        # tpacket_stats: frames seen, frames dropped for a full queue (reading resets them).
        _, drops = struct.unpack('II', s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        counts[d]['drops'] = drops
    print(json.dumps(counts), flush=True)


if __name__ == '__main__':
    main()
