// `tapir demo`: the foundation at work in one command. A TAP opened by this process is
// moved into a throw-away network namespace as eth0; a userspace ARP + ICMP responder
// (src/demo/responder.ts) plays the host at the other end; the kernel's own ping in the
// namespace gets its answers. Everything is removed at the end, also on failure.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CliError } from './errors.ts';

const HELP = `Usage: tapir demo [--count N]

Creates a network namespace tpdemo-XXXX with a TAP as eth0 (10.250.0.1/24), answers
ARP and ICMP echo for 10.250.0.2 in userspace, runs ping from the namespace, prints the
responder's counters, and removes the namespace. Needs root.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { count: { type: 'string', default: '3' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new CliError('demo: --count must be from 1 to 100', 2);
  const { TunDevice } = await import('../device/tun.ts');
  const { moveLinkToNetns } = await import('../device/netlink.ts');
  const { ArpIcmpResponder } = await import('../demo/responder.ts');
  const { ipv4 } = await import('../wire/index.ts');
  const { ip, spawnIn, tryIp } = await import('../device/ip-command.ts');
  const suffix = randomBytes(3).toString('hex');
  const netns = `tpdemo-${suffix}`;
  await ip(['netns', 'add', netns]);
  const tap = TunDevice.open({ name: `tpdemo${suffix}`, mode: 'tap' });
  try {
    moveLinkToNetns(tap.name, `/run/netns/${netns}`, 'eth0');
    await ip(['addr', 'add', '10.250.0.1/24', 'dev', 'eth0'], { netns });
    await ip(['link', 'set', 'eth0', 'up'], { netns });
    const responder = new ArpIcmpResponder(tap, ipv4('10.250.0.2'), 0x02_54_50_00_00_02);
    responder.start();
    console.log(`namespace ${netns}: eth0 = TAP ${tap.name} (fd ${tap.fd}) 10.250.0.1/24; userspace host 10.250.0.2 at 02:54:50:00:00:02`);
    // Asynchronous child: the responder answers from this process's event loop meanwhile.
    const ping = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawnIn(netns, ['ping', '-c', String(count), '-i', '0.2', '-W', '2', '10.250.0.2']);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => { out += d.toString(); process.stdout.write(d); });
      child.on('close', (code) => resolve({ code, out }));
    });
    responder.stop();
    console.log(`responder: ${responder.counts.arpReplies} ARP replies, ${responder.counts.echoReplies} echo replies, ${responder.counts.ignored} frames ignored`);
    return ping.code === 0 ? 0 : 1;
  } finally {
    tap.close();
    await tryIp(['netns', 'delete', netns]);
  }
}
