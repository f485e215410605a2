// EndpointSlice (discovery.k8s.io/v1) and Endpoints (v1) validation. Condition defaults
// follow the API contract kube-proxy relies on: ready and serving default to true,
// terminating to false.
import { Fields } from '../config/fields.ts';
import { Interner, kept, ListInterner, NO_ITEMS } from '../config/compact.ts';
import { checkIp, checkProtocol, ipFamilyOf, isDns1123Label, isDns1123Subdomain } from './fields.ts';
import { Label, type IpFamily, type EndpointAddress, type EndpointSliceObject, type EndpointsObject, type ObjectMeta, type Origin, type SliceEndpoint, type SlicePort } from './objects.ts';

/** The API's limit of addresses per endpoint (and endpoints per slice, ports per slice). */
const MAX_ENDPOINTS = 1000;

/** Node and zone names, one string each however many endpoints carry them. */
const NAMES = new Interner<string>(16_384);
/** Port lists, one each however many slices have the same (most of a Deployment's do). */
const PORT_LISTS = new ListInterner<SlicePort>(4_096);

function shared(name: string): string {
  return name === '' ? '' : NAMES.get(name, name);
}

export function validateEndpointSlice(top: Fields, metadata: ObjectMeta, origin: Origin): EndpointSliceObject {
  const serviceName = metadata.labels[Label.SERVICE_NAME] ?? '';
  if (serviceName === '') {
    top.problems.add(`metadata.labels[${JSON.stringify(Label.SERVICE_NAME)}]`, 'required field is missing (it names the Service this slice belongs to)');
  }
  const addressTypeText = top.string('addressType', true);
  let addressType: IpFamily = 'IPv4';
  if (addressTypeText === 'IPv6') addressType = 'IPv6';
  else if (addressTypeText === 'FQDN') top.fail('addressType', '"FQDN" is not supported (kube-proxy ignores FQDN slices too; use IPv4 or IPv6)');
  else if (addressTypeText !== '' && addressTypeText !== 'IPv4') top.fail('addressType', `Unsupported value: ${JSON.stringify(addressTypeText)}: supported values: "IPv4", "IPv6"`);
  const items = top.maps('endpoints');
  if (items.length > MAX_ENDPOINTS) top.fail('endpoints', `has ${items.length} entries, more than the limit of ${MAX_ENDPOINTS}`);
  const endpoints = items.map((f) => readSliceEndpoint(f, addressType));
  return { kind: 'EndpointSlice', origin, metadata, serviceName, addressType, endpoints: kept(endpoints), ports: PORT_LISTS.keep(readPorts(top, false)) };
}

function readSliceEndpoint(f: Fields, addressType: IpFamily): SliceEndpoint {
  const addressItems = f.list('addresses', true);
  if (addressItems.length > 100) f.fail('addresses', 'may have at most 100 addresses');
  const addresses: string[] = [];
  for (const item of addressItems) {
    const ip = checkIp(item.value, item.path, f.problems);
    if (ip === undefined) continue;
    // validateEndpointIP: every address is of the slice's addressType.
    if (ipFamilyOf(ip) !== addressType) f.problems.add(item.path, `${JSON.stringify(item.value)} must be an ${addressType} address (the slice's addressType)`);
    else addresses.push(ip);
  }
  const conditions = f.map('conditions') ?? new Fields({}, f.pathOf('conditions'), f.problems);
  const hints = f.map('hints');
  const names = (list: Fields[] | undefined): string[] => {
    if (list === undefined || list.length === 0) return NO_ITEMS;
    const out = list.map((h) => shared(h.string('name', true))).filter((n) => n !== '');
    return out.length === 0 ? NO_ITEMS : out;
  };
  return {
    address: addresses[0] ?? '',
    ready: conditions.bool('ready', true),
    serving: conditions.bool('serving', true),
    terminating: conditions.bool('terminating', false),
    hostname: readHostname(f),
    nodeName: shared(readName(f, 'nodeName')),
    zone: shared(f.string('zone')),
    forZones: names(hints?.maps('forZones')),
    forNodes: names(hints?.maps('forNodes')),
  };
}

function readName(f: Fields, key: string): string {
  const name = f.string(key);
  if (name !== '' && !isDns1123Subdomain(name)) f.fail(key, `${JSON.stringify(name)} is not a valid node name`);
  return name;
}

function readHostname(f: Fields): string {
  const hostname = f.string('hostname');
  if (hostname !== '' && !isDns1123Label(hostname)) f.fail('hostname', `${JSON.stringify(hostname)} is not a valid hostname (up to 63 lower-case letters, digits and "-")`);
  return hostname;
}

/** Slice and Endpoints ports: name optional, port required, protocol defaulting to TCP. */
function readPorts(f: Fields, required: boolean): SlicePort[] {
  const ports: SlicePort[] = [];
  const seen = new Map<string, number>();
  f.maps('ports', required).forEach((p, i) => {
    const name = p.string('name');
    if (name !== '' && !isDns1123Label(name)) p.fail('name', `${JSON.stringify(name)} is not a valid port name (lower-case letters, digits and "-")`);
    const protocol = checkProtocol(p, 'protocol');
    const port = p.int('port', 1, 65535, 0, true);
    // kube-proxy matches endpoint ports to service ports by (name, protocol).
    const key = `${name}/${protocol}`;
    if (seen.has(key)) p.fail('name', `${JSON.stringify(name)}/${protocol} is already used by ports[${seen.get(key)}]`);
    seen.set(key, i);
    ports.push({ name, port, protocol });
  });
  return ports;
}

export function validateEndpoints(top: Fields, metadata: ObjectMeta, origin: Origin): EndpointsObject {
  const subsets = top.maps('subsets').map((s) => {
    const readAddresses = (key: string): EndpointAddress[] => s.maps(key).flatMap((a) => {
      const ip = checkIp(a.value.ip, a.pathOf('ip'), a.problems);
      const nodeName = readName(a, 'nodeName');
      const hostname = readHostname(a);
      return ip !== undefined ? [{ ip, hostname, nodeName }] : [];
    });
    return { addresses: readAddresses('addresses'), notReadyAddresses: readAddresses('notReadyAddresses'), ports: readPorts(s, false) };
  });
  return { kind: 'Endpoints', origin, metadata, subsets };
}
