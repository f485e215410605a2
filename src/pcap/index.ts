// Classic libpcap files: a streaming reader, a hot-path writer, and the frame decoder
// behind `tapir pcap dump`.
export * from './format.ts';
export * from './reader.ts';
export * from './writer.ts';
export * from './decode.ts';
export * from './text.ts';
