// src/wire: zero-copy packet views, checksums, decoding, NAT rewrites and slow-path
// builders. Bytes only: this folder imports nothing outside itself.
export * from './bytes.ts';
export * from './drop-reason.ts';
export * from './address.ts';
export * from './checksum.ts';
export * from './ethernet.ts';
export * from './arp.ts';
export * from './ipv4.ts';
export * from './ipv6.ts';
export * from './tcp.ts';
export * from './udp.ts';
export * from './icmpv4.ts';
export * from './icmpv6.ts';
export * from './vxlan.ts';
export * from './virtio-net.ts';
export * from './decode.ts';
export * from './verify.ts';
export * from './nat.ts';
export * from './nat6.ts';
export * from './repr.ts';
export * from './reply.ts';
