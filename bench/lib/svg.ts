// Plain SVG charts for the benchmark report (bench/report.ts): grouped bar charts with
// error bars (median, min-max over runs) and line charts with error bars. No library:
// the output is a few hundred elements, a viewer or a browser shows it as it is, and a
// paper can include it. Every text is escaped; NaN values are left out (a missing bar
// or point, never a bar of height NaN, which would make the file invalid).

/** A median with the spread over the runs it came from. */
export interface Spread { median: number; min: number; max: number }

export interface BarChart {
  title: string;
  unit: string;
  /** The groups along the x axis (paths, loads). */
  categories: string[];
  /** One bar per series in each group (modes); values[i] belongs to categories[i]. */
  series: { name: string; values: Spread[] }[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  unit: string;
  /** Plots x on a log10 axis (service counts 1k..30k). */
  logX?: boolean;
  series: { name: string; points: { x: number; y: Spread }[] }[];
}

// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];
const W = 720, H = 400;
const M = { left: 78, right: 20, top: 40, bottom: 90 };

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const num = (v: number): string => (Math.round(v * 100) / 100).toString();

/** 0 to a round number above max, with 4-6 ticks of 1, 2 or 5 times a power of ten. */
export function niceTicks(max: number): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * pow).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = 0; t < max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

export function formatTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return `${Number(v.toPrecision(3))}`;
}

function frame(title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** The y axis (grid lines, ticks, unit) for values 0..top; returns y(v). */
function yAxis(body: string[], ticks: number[], unit: string): (v: number) => number {
  const top = ticks[ticks.length - 1]!;
  // Clamped to the axis: a spread that dips below 0 (a figure with a baseline subtracted) ends at the axis.
  const y = (v: number): number => H - M.bottom - ((H - M.top - M.bottom) * Math.min(top, Math.max(0, v))) / top;
  for (const t of ticks) {
    body.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${num(y(t))}" y2="${num(y(t))}" stroke="#dddddd"/>`);
    body.push(`<text x="${M.left - 6}" y="${num(y(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  }
  body.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#000000"/>`);
  body.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#000000"/>`);
  body.push(`<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(unit)}</text>`);
  return y;
}

/** Below the x axis label, wrapping to a new line where the next name would pass the right edge (7 px a character is sans-serif 12 px's widest average). */
function legend(body: string[], names: string[]): void {
  let x = M.left, y = H - M.bottom + 50;
  for (const [i, name] of names.entries()) {
    const width = 28 + name.length * 7;
    if (x > M.left && x + width > W - M.right) {
      x = M.left;
      y += 16;
    }
    body.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`);
    body.push(`<text x="${x + 16}" y="${y + 10}">${escapeXml(name)}</text>`);
    x += width;
  }
}

function errorBar(body: string[], x: number, y: (v: number) => number, s: Spread): void {
  if (!Number.isFinite(s.min) || !Number.isFinite(s.max) || s.min === s.max) return;
  body.push(`<path d="M${num(x - 4)} ${num(y(s.max))}H${num(x + 4)}M${num(x)} ${num(y(s.max))}V${num(y(s.min))}M${num(x - 4)} ${num(y(s.min))}H${num(x + 4)}" stroke="#000000" fill="none"/>`);
}

const finiteMax = (xs: number[]): number => xs.filter(Number.isFinite).reduce((a, b) => Math.max(a, b), 0);

export function barChart(c: BarChart): string {
  const body: string[] = [];
  const ticks = niceTicks(finiteMax(c.series.flatMap((s) => s.values.flatMap((v) => [v.median, v.max]))));
  const y = yAxis(body, ticks, c.unit);
  const groupW = (W - M.left - M.right) / Math.max(1, c.categories.length);
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, c.series.length));
  for (const [g, category] of c.categories.entries()) {
    const x0 = M.left + g * groupW + (groupW - barW * c.series.length) / 2;
    for (const [i, s] of c.series.entries()) {
      const v = s.values[g];
      if (v === undefined || !Number.isFinite(v.median)) continue;
      const x = x0 + i * barW;
      body.push(`<rect x="${num(x + 1)}" y="${num(y(v.median))}" width="${num(barW - 2)}" height="${num(y(0) - y(v.median))}" fill="${COLOURS[i % COLOURS.length]}"><title>${escapeXml(`${s.name}, ${category}: ${formatTick(v.median)} ${c.unit} (${formatTick(v.min)}-${formatTick(v.max)})`)}</title></rect>`);
      errorBar(body, x + barW / 2, y, v);
      body.push(`<text x="${num(x + barW / 2)}" y="${num(y(Math.max(v.median, Number.isFinite(v.max) ? v.max : v.median)) - 4)}" text-anchor="middle" font-size="10">${escapeXml(formatTick(v.median))}</text>`);
    }
    body.push(`<text x="${num(M.left + (g + 0.5) * groupW)}" y="${H - M.bottom + 16}" text-anchor="middle">${escapeXml(category)}</text>`);
  }
  legend(body, c.series.map((s) => s.name));
  return frame(c.title, body);
}

export function lineChart(c: LineChart): string {
  const body: string[] = [];
  const xs = [...new Set(c.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ticks = niceTicks(finiteMax(c.series.flatMap((s) => s.points.flatMap((p) => [p.y.median, p.y.max]))));
  const y = yAxis(body, ticks, c.unit);
  const f = (v: number): number => (c.logX ? Math.log10(v) : v);
  const lo = f(xs[0] ?? 1), hi = f(xs[xs.length - 1] ?? 1);
  const pad = 30;
  const x = (v: number): number => (hi === lo ? (M.left + W - M.right) / 2 : M.left + pad + ((W - M.left - M.right - 2 * pad) * (f(v) - lo)) / (hi - lo));
  for (const v of xs) body.push(`<text x="${num(x(v))}" y="${H - M.bottom + 16}" text-anchor="middle">${escapeXml(formatTick(v))}</text>`);
  body.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 36}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  for (const [i, s] of c.series.entries()) {
    const colour = COLOURS[i % COLOURS.length];
    const pts = s.points.filter((p) => Number.isFinite(p.y.median)).sort((a, b) => a.x - b.x);
    if (pts.length > 1) body.push(`<polyline points="${pts.map((p) => `${num(x(p.x))},${num(y(p.y.median))}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const p of pts) {
      body.push(`<circle cx="${num(x(p.x))}" cy="${num(y(p.y.median))}" r="4" fill="${colour}"><title>${escapeXml(`${s.name}, ${formatTick(p.x)}: ${formatTick(p.y.median)} ${c.unit} (${formatTick(p.y.min)}-${formatTick(p.y.max)})`)}</title></circle>`);
      errorBar(body, x(p.x), y, p.y);
      body.push(`<text x="${num(x(p.x) + 7)}" y="${num(y(p.y.median) - 6)}" font-size="10" fill="${colour}">${escapeXml(formatTick(p.y.median))}</text>`);
    }
  }
  legend(body, c.series.map((s) => s.name));
  return frame(c.title, body);
}
