// resolv.conf(5) as glibc's res_init reads it, for two readers: the forwarder's default
// upstreams (`forward . /etc/resolv.conf`) and the lab, which writes each pod's file per
// dnsPolicy the way kubelet does.
//
// What glibc does and this copies:
// - `nameserver ADDR`: at most MAXNS = 3 are used, later ones are ignored; an address
//   that does not parse is skipped (an IPv6 one may carry a `%scope`).
// - `domain NAME` and `search NAME...` set the same list (a `domain` is a one-entry search
//   list); whichever comes last wins.
// - `options ...`: the tokens of every `options` line, in order; a later token with the
//   same name (`ndots:2` after `ndots:5`) replaces the earlier one, as res_init's last
//   assignment wins. Tokens are kept verbatim (unknown ones too: glibc ignores them, but a
//   file written back must not lose them).
// - Comments: a line whose first non-blank character is `#` or `;`, and the rest of a line
//   from a token starting with either. Keywords are case-sensitive and anything else
//   (`sortlist`, `lookup`) is ignored.
import { isIP } from 'node:net';

export interface ResolvConf {
  nameservers: string[];
  search: string[];
  options: string[];
}

/** glibc's MAXNS: res_init keeps the first three `nameserver` lines. */
export const MAX_NAMESERVERS = 3;

export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], options: [] };
  for (const line of text.split('\n')) {
    const tokens = lineTokens(line);
    const keyword = tokens[0];
    if (keyword === undefined) continue;
    const args = tokens.slice(1);
    switch (keyword) {
      case 'nameserver': {
        const address = args[0];
        if (address !== undefined && conf.nameservers.length < MAX_NAMESERVERS && isNameserverAddress(address)) {
          conf.nameservers.push(address);
        }
        break;
      }
      case 'domain':
        // glibc takes only the first word of a `domain` line.
        conf.search = args.slice(0, 1).map(trimDot).filter((d) => d !== '');
        break;
      case 'search':
        conf.search = args.map(trimDot).filter((d) => d !== '');
        break;
      case 'options':
        for (const option of args) addOption(conf.options, option);
        break;
      default:
        break;
    }
  }
  return conf;
}

/**
 * The canonical form, as containerd writes a pod sandbox's file from the kubelet's DNS
 * config: `search`, one `nameserver` line each, `options`; nothing for an empty list, a
 * final newline.
 */
export function formatResolvConf(conf: ResolvConf): string {
  let text = '';
  if (conf.search.length > 0) text += `search ${conf.search.join(' ')}\n`;
  for (const ns of conf.nameservers) text += `nameserver ${ns}\n`;
  if (conf.options.length > 0) text += `options ${conf.options.join(' ')}\n`;
  return text;
}

/** The whitespace-separated tokens of one line up to its comment. */
function lineTokens(line: string): string[] {
  const tokens: string[] = [];
  for (const token of line.split(/[ \t\r\f\v]+/)) {
    if (token === '') continue;
    if (token.startsWith('#') || token.startsWith(';')) break;
    tokens.push(token);
  }
  return tokens;
}

function isNameserverAddress(text: string): boolean {
  const percent = text.indexOf('%');
  if (percent < 0) return isIP(text) !== 0;
  // A scope id is only meaningful (and only accepted by glibc) on an IPv6 address.
  return isIP(text.slice(0, percent)) === 6 && percent < text.length - 1;
}

/** `cluster.local.` and `cluster.local` are the same search domain; the root alone is dropped. */
function trimDot(domain: string): string {
  return domain.endsWith('.') ? domain.slice(0, -1) : domain;
}

function addOption(options: string[], option: string): void {
  const name = optionName(option);
  const i = options.findIndex((o) => optionName(o) === name);
  if (i >= 0) options[i] = option;
  else options.push(option);
}

function optionName(option: string): string {
  const colon = option.indexOf(':');
  return colon < 0 ? option : option.slice(0, colon);
}
