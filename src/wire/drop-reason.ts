// Why a frame could not be decoded. A view's failed `wrap` leaves one of these in its
// `reason` field and `decodeFrame` copies it to `PacketInfo.dropReason`, so the
// datapath can count drops per reason in a typed array indexed by the code. 0 is "ok".
export const DropReason = {
  OK: 0,
  UNSUPPORTED_LINK_TYPE: 1,
  TRUNCATED_ETHERNET: 2,
  UNSUPPORTED_ETHERTYPE: 3,
  TRUNCATED_ARP: 4,
  UNSUPPORTED_ARP: 5,
  TRUNCATED_IPV4: 6,
  BAD_IP_VERSION: 7,
  BAD_IPV4_IHL: 8,
  BAD_IPV4_TOTAL_LENGTH: 9,
  BAD_IPV4_OPTIONS: 10,
  TRUNCATED_IPV6: 11,
  BAD_IPV6_PAYLOAD_LENGTH: 12,
  BAD_IPV6_EXTENSION_HEADER: 13,
  TRUNCATED_TCP: 14,
  BAD_TCP_DATA_OFFSET: 15,
  BAD_TCP_OPTIONS: 16,
  TRUNCATED_UDP: 17,
  BAD_UDP_LENGTH: 18,
  TRUNCATED_ICMP: 19,
  BAD_ICMP_EMBEDDED: 20,
  TRUNCATED_VXLAN: 21,
  BAD_VXLAN_FLAGS: 22,
  TRUNCATED_VIRTIO_NET_HEADER: 23,
} as const;

export type DropReasonCode = (typeof DropReason)[keyof typeof DropReason];

// Names indexed by code, for logs and metric labels (slow path only).
export const dropReasonNames: readonly string[] = [
  'ok',
  'unsupported-link-type',
  'truncated-ethernet',
  'unsupported-ethertype',
  'truncated-arp',
  'unsupported-arp',
  'truncated-ipv4',
  'bad-ip-version',
  'bad-ipv4-ihl',
  'bad-ipv4-total-length',
  'bad-ipv4-options',
  'truncated-ipv6',
  'bad-ipv6-payload-length',
  'bad-ipv6-extension-header',
  'truncated-tcp',
  'bad-tcp-data-offset',
  'bad-tcp-options',
  'truncated-udp',
  'bad-udp-length',
  'truncated-icmp',
  'bad-icmp-embedded',
  'truncated-vxlan',
  'bad-vxlan-flags',
  'truncated-virtio-net-header',
];

export const DROP_REASON_COUNT = dropReasonNames.length;
