// Durations as Go writes them (time.ParseDuration, metav1.Duration in Kubernetes
// configs): a sequence of decimal numbers, each with a unit, such as "300ms", "1.5h" or
// "2h45m0s"; units ns, us (or µs), ms, s, m, h; "0" alone is zero. Kubernetes configs
// written by kubeadm and by `kube-proxy --write-config-to` use this form.

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};

const PART = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/;

/** Milliseconds of a Go duration string, or undefined when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let total = 0;
  while (s !== '') {
    const m = PART.exec(s);
    // Go requires digits on at least one side of the point.
    if (m === null || (m[1] === '' && (m[2] ?? '') === '')) return undefined;
    total += Number(`${m[1] === '' ? '0' : m[1]}.${m[2] ?? ''}0`) * UNIT_MS[m[3]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/** Go's own form of a duration (time.Duration.String), for /configz and messages: "1h0m0s", "1.5s", "250ms", "0s". */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${trim(rest)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = `${trim(rest / 1000)}s`;
  if (h > 0) return `${sign}${h}h${m}m${s}`;
  if (m > 0) return `${sign}${m}m${s}`;
  return `${sign}${s}`;
}

function trim(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}
