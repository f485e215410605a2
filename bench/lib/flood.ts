// The flood a pod sends at a ClusterIP, shared by bench/conntrack-flood.ts and
// test/lab-conntrack-flood.test.ts: python3 -c FLOOD syn|udp SRC VIP PORT SECONDS
// prints "packets start end" (seconds since the epoch, the pod's clock is the host's).
// Packets from this pod's own address (anti-spoofing drops anything else) to VIP:port,
// a new source port each, as fast as Python writes them, for the given seconds. The
// checksum covers the pseudo-header; the kernel fills the IPv4 header's.
export const FLOOD = `
import socket, struct, sys, time
kind, src, dst, port, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
proto = 6 if kind == 'syn' else 17
sent, sport, start = 0, 1024, time.time()
end = start + seconds
while time.time() < end:
    for _ in range(256):
        sport = 1024 + (sport - 1023) % 64000
        if proto == 6:
            l4 = struct.pack('!HHIIBBHHH', sport, port, sent, 0, 5 << 4, 0x02, 64240, 0, 0)
            at = 16
        else:
            l4 = struct.pack('!HHHH', sport, port, 8 + 8, 0) + struct.pack('!Q', sent)
            at = 6
        c = csum(sa + da + struct.pack('!BBH', 0, proto, len(l4)) + l4) or 0xffff
        l4 = l4[:at] + struct.pack('!H', c) + l4[at + 2:]
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, sa, da)
        s.sendto(ip + l4, (dst, 0))
        sent += 1
print(sent, start, time.time())
`;
