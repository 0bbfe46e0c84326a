/**
 * The report as one self-contained HTML page: tables plus inline SVG charts, no scripts, no
 * external assets. The report JSON is embedded (inert, type="application/json") for reuse.
 */
import type { GroupStats, LoadTestReport, SharedHistogram } from './report.js';
import { niceStep, type Summary, type TimelineBucket } from './stats.js';

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function colorFor(i: number): string {
  return PALETTE[i % PALETTE.length];
}

/** Numbers for tables: integers as is, else up to 3 significant decimals. */
export function fmt(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(digits);
}

function fmtPct(n: number): string {
  return `${(n * 100).toFixed(n > 0 && n < 0.01 ? 2 : 1)}%`;
}

/** Tick label: drop needless decimals, thousands as k. */
function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a >= 10000) return `${Number((v / 1000).toFixed(1))}k`;
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(3)));
}

function niceTicks(max: number, target = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const step = niceStep(max / target);
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v = Number((v + step).toPrecision(12))) ticks.push(v);
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const FRAME: Frame = { width: 760, height: 300, left: 60, right: 16, top: 16, bottom: 48 };

function axes(f: Frame, yTicks: number[], yMax: number, xLabel: string, yLabel: string): string {
  const plotH = f.height - f.top - f.bottom;
  const plotW = f.width - f.left - f.right;
  const parts: string[] = [];
  for (const t of yTicks) {
    const y = f.top + plotH - (t / yMax) * plotH;
    parts.push(
      `<line x1="${f.left}" x2="${f.left + plotW}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e6e6e6" />`,
      `<text x="${f.left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#555">${escapeHtml(tickLabel(t))}</text>`,
    );
  }
  parts.push(
    `<line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.top + plotH}" stroke="#888" />`,
    `<line x1="${f.left}" x2="${f.left + plotW}" y1="${f.top + plotH}" y2="${f.top + plotH}" stroke="#888" />`,
    `<text x="${f.left + plotW / 2}" y="${f.height - 6}" text-anchor="middle" font-size="12" fill="#333">${escapeHtml(xLabel)}</text>`,
    `<text x="14" y="${f.top + plotH / 2}" text-anchor="middle" font-size="12" fill="#333" transform="rotate(-90 14 ${f.top + plotH / 2})">${escapeHtml(yLabel)}</text>`,
  );
  return parts.join('');
}

export interface Series {
  label: string;
  color: string;
  values: number[];
}

function legend(series: readonly { label: string; color: string }[]): string {
  return `<div class="legend">${series.map((s) => `<span><i style="background:${s.color}"></i>${escapeHtml(s.label)}</span>`).join(' ')}</div>`;
}

function svgOpen(f: Frame, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${escapeHtml(title)}"><title>${escapeHtml(title)}</title>`;
}

/**
 * Stacked bars, one stack per category (bin or second). `categoryLabels[i]` names bar i in its
 * tooltip; `xTicks` are [position in bars (0..n), label] pairs.
 */
export function svgStackedBars(opts: {
  title: string;
  series: readonly Series[];
  categoryLabels: readonly string[];
  xTicks: readonly [number, string][];
  xLabel: string;
  yLabel: string;
}): string {
  const f = FRAME;
  const n = opts.categoryLabels.length;
  const totals = Array.from({ length: n }, (_, i) => opts.series.reduce((s, se) => s + (se.values[i] ?? 0), 0));
  const yTicks = niceTicks(Math.max(1, ...totals));
  const yMax = yTicks[yTicks.length - 1];
  const plotW = f.width - f.left - f.right;
  const plotH = f.height - f.top - f.bottom;
  const bw = n > 0 ? plotW / n : plotW;
  const parts: string[] = [svgOpen(f, opts.title), axes(f, yTicks, yMax, opts.xLabel, opts.yLabel)];
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (const s of opts.series) {
      const v = s.values[i] ?? 0;
      if (v <= 0) continue;
      const h = (v / yMax) * plotH;
      const y = f.top + plotH - ((acc + v) / yMax) * plotH;
      acc += v;
      parts.push(
        `<rect x="${(f.left + i * bw + 0.5).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(0.5, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${s.color}"><title>${escapeHtml(`${opts.categoryLabels[i]}: ${s.label} ${fmt(v)}`)}</title></rect>`,
      );
    }
  }
  for (const [pos, label] of opts.xTicks) {
    const x = f.left + pos * bw;
    parts.push(
      `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${f.top + plotH}" y2="${f.top + plotH + 4}" stroke="#888" />`,
      `<text x="${x.toFixed(1)}" y="${f.top + plotH + 16}" text-anchor="middle" font-size="11" fill="#555">${escapeHtml(label)}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}

/** Lines over x = 0..n-1 (seconds), one per series. */
export function svgLines(opts: { title: string; series: readonly Series[]; xLabel: string; yLabel: string }): string {
  const f = FRAME;
  const n = Math.max(0, ...opts.series.map((s) => s.values.length));
  const yTicks = niceTicks(Math.max(1, ...opts.series.flatMap((s) => s.values)));
  const yMax = yTicks[yTicks.length - 1];
  const plotW = f.width - f.left - f.right;
  const plotH = f.height - f.top - f.bottom;
  // Point i is drawn in the middle of second i.
  const x = (i: number) => f.left + ((i + 0.5) / Math.max(1, n)) * plotW;
  const y = (v: number) => f.top + plotH - (v / yMax) * plotH;
  const parts: string[] = [svgOpen(f, opts.title), axes(f, yTicks, yMax, opts.xLabel, opts.yLabel)];
  for (const s of opts.series) {
    if (s.values.length === 0) continue;
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"><title>${escapeHtml(s.label)}</title></polyline>`);
    if (s.values.length <= 120) {
      s.values.forEach((v, i) =>
        parts.push(
          `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5" fill="${s.color}"><title>${escapeHtml(`${i}–${i + 1} s: ${s.label} ${fmt(v)}`)}</title></circle>`,
        ),
      );
    }
  }
  const step = Math.max(1, niceStep(n / 10));
  for (let i = 0; i <= n; i += step) {
    const xi = f.left + (i / Math.max(1, n)) * plotW;
    parts.push(
      `<line x1="${xi.toFixed(1)}" x2="${xi.toFixed(1)}" y1="${f.top + plotH}" y2="${f.top + plotH + 4}" stroke="#888" />`,
      `<text x="${xi.toFixed(1)}" y="${f.top + plotH + 16}" text-anchor="middle" font-size="11" fill="#555">${i}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}

function histogramChart(title: string, h: SharedHistogram, labels: readonly string[], xLabel: string): string {
  const series: Series[] = labels.map((l, i) => ({ label: l, color: colorFor(i), values: h.countsByAdapter[l] ?? [] }));
  const bins = h.counts.length;
  const tickEvery = Math.max(1, Math.ceil(bins / 8));
  const xTicks: [number, string][] = [];
  for (let i = 0; i <= bins; i += tickEvery) xTicks.push([i, tickLabel(h.edges[i])]);
  const categoryLabels = h.counts.map((_, i) => `${tickLabel(h.edges[i])}–${tickLabel(h.edges[i + 1])} ms`);
  return `<figure><figcaption>${escapeHtml(title)}</figcaption>${svgStackedBars({
    title,
    series,
    categoryLabels,
    xTicks,
    xLabel,
    yLabel: 'requests',
  })}${legend(series)}</figure>`;
}

function summaryCells(s: Summary | null): string {
  if (!s) return '<td>–</td><td>–</td><td>–</td>';
  return `<td>${fmt(s.p50)}</td><td>${fmt(s.p90)}</td><td>${fmt(s.p99)}</td>`;
}

function groupRow(name: string, g: GroupStats, stream: boolean, color: string | null): string {
  const swatch = color ? `<i class="sw" style="background:${color}"></i>` : '';
  return (
    `<tr><th scope="row">${swatch}${escapeHtml(name)}</th>` +
    `<td>${g.requests}</td><td>${g.ok}</td><td>${g.errors}</td><td>${fmtPct(g.errorRate)}</td>` +
    `<td>${fmt(g.requestsPerSec, 2)}</td><td>${g.generatedTokens}</td><td>${fmt(g.tokensPerSec, 1)}</td>` +
    summaryCells(g.ttftMs) +
    summaryCells(g.latencyMs) +
    (stream ? summaryCells(g.timePerOutputTokenMs) : '') +
    `<td>${fmt(g.completionTokensPerRequest?.mean ?? null)}</td>` +
    `<td>${fmt(g.promptTokensPerRequest?.mean ?? null)}</td>` +
    `</tr>`
  );
}

function kv(entries: Record<string, number>): string {
  const e = Object.entries(entries);
  return e.length ? e.map(([k, v]) => `${escapeHtml(k)} ${v}`).join(', ') : '–';
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f5f5f5}th[scope=row]{text-align:left}td.l{text-align:left;white-space:normal}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:130px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0}
figure{margin:10px 0 18px}figcaption{font-weight:600;margin-bottom:4px}
svg{max-width:100%;height:auto;background:#fff;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.legend span{margin-right:14px;font-size:12px}.legend i,.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.muted{color:#666}
`;

export function renderHtml(report: LoadTestReport): string {
  const c = report.config;
  const labels = Object.keys(report.perAdapter);
  const o = report.overall;
  const title = `Load test ${report.startedAt}`;
  const card = (value: string, label: string) => `<div class="card"><b>${escapeHtml(value)}</b><span>${escapeHtml(label)}</span></div>`;

  const stream = c.stream;
  const statCols = (name: string) => `<th colspan="3">${name} ms<br />p50 / p90 / p99</th>`;
  const tableHead =
    '<tr><th>adapter</th><th>requests</th><th>ok</th><th>errors</th><th>error rate</th><th>req/s</th>' +
    '<th>generated tokens</th><th>tokens/s</th>' +
    statCols(stream ? 'time to first token' : 'time to first token (= latency)') +
    statCols('total latency') +
    (stream ? statCols('time per output token') : '') +
    '<th>tokens / request</th><th>prompt tokens / request</th></tr>';
  const rows = labels.map((l, i) => groupRow(l, report.perAdapter[l], stream, colorFor(i))).join('') + groupRow('all', o, stream, null);

  // Errors: one row per code, one column per adapter.
  const codes = Object.keys(o.errorsByCode).sort();
  const errorsTable = codes.length
    ? `<table><tr><th>code</th>${labels.map((l) => `<th>${escapeHtml(l)}</th>`).join('')}<th>all</th><th>example message</th></tr>${codes
        .map(
          (code) =>
            `<tr><th scope="row">${escapeHtml(code)}</th>${labels
              .map((l) => `<td>${report.perAdapter[l].errorsByCode[code] ?? 0}</td>`)
              .join('')}<td>${o.errorsByCode[code]}</td><td class="l">${escapeHtml(
              report.errorSamples[code]?.[0] ?? report.clientErrorCodes[code] ?? '',
            )}</td></tr>`,
        )
        .join('')}</table><p class="muted">By HTTP status: ${escapeHtml(kv(o.errorsByStatus))} (0 = no HTTP response).</p>`
    : '<p>No errors.</p>';

  const charts: string[] = [];
  if (report.histograms.latencyMs) {
    charts.push(histogramChart('Total latency distribution (successful requests)', report.histograms.latencyMs, labels, 'total latency, ms'));
  } else {
    charts.push('<p>No successful requests: no latency histogram.</p>');
  }
  if (report.histograms.ttftMs) {
    charts.push(histogramChart('Time to first token distribution (successful requests)', report.histograms.ttftMs, labels, 'time to first token, ms'));
  }
  // Per-second rates; the last second is usually cut short by the end of the run: rates there
  // divide by the part covered, and a last bucket under half a second is left out (too noisy).
  const all = report.timeline;
  const tl = all.length && all[all.length - 1].coveredS < 0.5 ? all.slice(0, -1) : all;
  const perS = (b: TimelineBucket, v: number) => (b.coveredS > 0 ? v / b.coveredS : 0);
  const cut = all.length - tl.length;
  const cutNote = cut ? ` The last ${all[all.length - 1].coveredS.toFixed(2)} s are left out.` : '';
  if (tl.length) {
    const tokenSeries: Series[] = [
      ...labels.map((l, i) => ({ label: l, color: colorFor(i), values: tl.map((b) => perS(b, b.byAdapter[l]?.tokens ?? 0)) })),
      { label: 'all', color: '#222', values: tl.map((b) => perS(b, b.tokens)) },
    ];
    charts.push(
      `<figure><figcaption>Generated tokens per second${stream ? ' (counted as the token events arrive)' : ' (counted when each answer arrives)'}</figcaption>${svgLines(
        {
          title: 'Generated tokens per second',
          series: tokenSeries,
          xLabel: 'seconds since start',
          yLabel: 'tokens/s',
        },
      )}${legend(tokenSeries)}<p class="muted">${escapeHtml(`Each point is one second of the run.${cutNote}`)}</p></figure>`,
    );
    const reqSeries: Series[] = [
      ...labels.map((l, i) => ({ label: l, color: colorFor(i), values: tl.map((b) => perS(b, b.byAdapter[l]?.requests ?? 0)) })),
      { label: 'errors', color: '#d62728', values: tl.map((b) => perS(b, b.errors)) },
    ];
    const tickEvery = Math.max(1, niceStep(tl.length / 10));
    const xTicks: [number, string][] = [];
    for (let i = 0; i <= tl.length; i += tickEvery) xTicks.push([i, String(i)]);
    charts.push(
      `<figure><figcaption>Finished requests per second (ok, by adapter, and errors)</figcaption>${svgStackedBars({
        title: 'Finished requests per second',
        series: reqSeries,
        categoryLabels: tl.map((b) => `${b.second}–${b.second + 1} s`),
        xTicks,
        xLabel: 'seconds since start',
        yLabel: 'requests/s',
      })}${legend(reqSeries)}</figure>`,
    );
  }

  const config: [string, string][] = [
    ['URL', c.url],
    ['adapter mix', c.adapters.map((a) => `${a.label} ${fmtPct(a.share)}`).join(', ')],
    ['concurrency', String(c.concurrency)],
    ['duration', `${c.durationS} s asked, ${report.run.elapsedS.toFixed(1)} s elapsed, stopped by ${report.run.stoppedBy}`],
    ['max requests', c.maxRequests === null ? '–' : String(c.maxRequests)],
    ['mode', stream ? 'streaming (SSE)' : 'non-streaming'],
    ['prompt tokens (approx.)', c.promptTokens.min === c.promptTokens.max ? String(c.promptTokens.min) : `${c.promptTokens.min}–${c.promptTokens.max}`],
    ['max_tokens', String(c.maxTokens)],
    ['route', c.route ?? 'not sent (server default: auto)'],
    ['temperature', c.temperature === null ? 'server default' : String(c.temperature)],
    ['ignore_eos', String(c.ignoreEos)],
    ['seed', String(c.seed)],
    ['started / finished', `${report.startedAt} / ${report.finishedAt}`],
  ];
  if (report.run.abortedInFlight) config.push(['aborted in flight', `${report.run.abortedInFlight} (run was stopped; not counted)`]);

  const finish = labels
    .map(
      (l) =>
        `<tr><th scope="row">${escapeHtml(l)}</th><td class="l">${escapeHtml(kv(report.perAdapter[l].finishReasons))}</td><td class="l">${escapeHtml(kv(report.perAdapter[l].routes))}</td></tr>`,
    )
    .join('');

  // JSON inside <script> must not contain "</script" or "<!--".
  const embedded = JSON.stringify(report).replace(/</g, '\\u003c');

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">${escapeHtml(report.tool)} · report version ${report.version}</p>
<div class="cards">
${card(String(o.requests), 'requests finished')}
${card(fmt(o.requestsPerSec, 2), 'requests/s')}
${card(fmt(o.tokensPerSec, 1), 'generated tokens/s')}
${card(fmtPct(o.errorRate), 'errors')}
${card(o.ttftMs ? `${fmt(o.ttftMs.p50)} ms` : '–', stream ? 'p50 time to first token' : 'p50 time to first token (= latency)')}
${card(o.latencyMs ? `${fmt(o.latencyMs.p50)} ms` : '–', 'p50 total latency')}
</div>
<p class="note">${escapeHtml(report.notes.ttft)}</p>
<h2>Per adapter</h2>
<table>${tableHead}${rows}</table>
<p class="muted">${escapeHtml(report.notes.latency)} ${escapeHtml(report.notes.percentiles)}</p>
<h2>Errors</h2>
${errorsTable}
<h2>Charts</h2>
${charts.join('\n')}
<h2>Finish reasons and routes</h2>
<table><tr><th>adapter</th><th>finish_reason</th><th>route</th></tr>${finish}</table>
<h2>Configuration</h2>
<table>${config.map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td class="l">${escapeHtml(v)}</td></tr>`).join('')}</table>
<script type="application/json" id="report-data">${embedded}</script>
</body>
</html>
`;
}
