"""RUN/report.html: the run in one file that opens offline (no server, no network, nothing fetched): the same
panels as run.png, drawn in the browser from the points embedded in the page, and the sample completions
(samples.jsonl) with each prompt's best and worst completion side by side.

Everything in it from the run (names, prompts, completions) is escaped: the page shows a run's text, it never
runs it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from envkit.files import write_owned
from envkit.runs.plot import AXIS_LABELS, COUNTS_FROM_ZERO, REWARD_PANELS, panels, reward_limits, series_label
from envkit.runs.samples import count, ranked, read_samples, score_line

REPORT = "report.html"
SAMPLE_STEPS = 20  # the last logged steps of samples.jsonl shown (the file keeps them all)
STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:17px;margin-top:28px}#charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{border:1px solid #ddd;background:#fafafa}svg text{font:11px sans-serif}
table.pair{border-collapse:collapse;width:100%;table-layout:fixed;margin:6px 0 14px}
table.pair td,table.pair th{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
pre{white-space:pre-wrap;margin:0;font:12px ui-monospace,monospace}.meta{color:#555}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}"""
# Draws each panel as an SVG chart: polylines over a step axis, the y range from the points, a legend.
SCRIPT = r"""
const data = JSON.parse(document.getElementById('run-data').textContent);
const colors = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
const NS = 'http://www.w3.org/2000/svg', W = 440, H = 270, L = 56, R = 12, T = 28, B = 34;
function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  return node;
}
const fmt = v => Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(1) : +v.toPrecision(3);
let drawn = 0;
for (const panel of data.panels) {
  const all = panel.series.flatMap(s => s.points);
  if (!all.length) continue;
  const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (panel.y) [y0, y1] = [Math.min(y0, panel.y[0]), Math.max(y1, panel.y[1])];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const svg = el('svg', {class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`});
  svg.appendChild(el('text', {x: W / 2, y: 16, 'text-anchor': 'middle', 'font-weight': 'bold'}, panel.title));
  for (const [a, b, c, d] of [[L, H - B, W - R, H - B], [L, T, L, H - B]])
    svg.appendChild(el('line', {x1: a, y1: b, x2: c, y2: d, stroke: '#888'}));
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    svg.appendChild(el('line', {x1: L, y1: sy(v), x2: W - R, y2: sy(v), stroke: '#e4e4e4'}));
    svg.appendChild(el('text', {x: L - 4, y: sy(v) + 4, 'text-anchor': 'end'}, fmt(v)));
  }
  for (const [v, x] of [[x0, L], [x1, W - R]])
    svg.appendChild(el('text', {x: x, y: H - B + 14, 'text-anchor': 'middle'}, v));
  svg.appendChild(el('text', {x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle'}, 'step'));
  panel.series.forEach((s, i) => {
    if (!s.points.length) return;
    const color = colors[i % colors.length];
    const points = s.points.map(p => `${sx(p[0])},${sy(p[1])}`).join(' ');
    svg.appendChild(el('polyline', {class: 'series', 'data-label': s.label, 'data-points': s.points.length,
      fill: 'none', stroke: color, 'stroke-width': 1.8, points: points}));
    svg.appendChild(el('text', {x: L + 8, y: T + 12 + 13 * i, fill: color}, s.label));
  });
  document.getElementById('charts').appendChild(svg);
  drawn += 1;
}
document.getElementById('status').textContent = `${drawn} charts drawn`;
"""


def chart_data(rows: list[dict], guard_metric: str) -> list[dict]:
    """run.png's panels (envkit.runs.plot.panels) as JSON: each a title, its series of [step, value] points and
    the y range run.png gives it (rewards from 0 to at least 1, counts and rates from 0: a wobble is not drawn as a
    crash; null: the points' own range).  A panel's right-axis series (tokens/s beside step time) is a chart of its
    own here, named by its axis."""
    shown, drawn = panels(rows, guard_metric)
    charts = []
    for title, left, right in shown:
        parts = [(AXIS_LABELS[title] if right else title, left)] + ([(AXIS_LABELS[right], [right])] if right else [])
        for name, keys in parts:
            values = [v for key in keys for _, v in drawn[key]]
            y = (reward_limits(values) if title in REWARD_PANELS else
                 (0.0, 1.08 * max(values, default=1) or 1) if title in COUNTS_FROM_ZERO else None)
            charts.append({"title": name, "y": y, "series": [{"label": series_label(key), "points": drawn[key]}
                                                             for key in keys if drawn[key]]})
    return charts


def _completion_cell(completion: dict) -> str:
    text = html.escape(str(completion.get("completion", "")))
    return f'<div class="meta">{html.escape(score_line(completion))}</div><pre>{text}</pre>'


def samples_html(steps: list[dict]) -> str:
    """Each logged step as a <details> (the last one open): per prompt its answer and best vs worst completion."""
    parts = []
    for row in steps[-SAMPLE_STEPS:]:
        groups = []
        for group in row["groups"]:
            completions = ranked(group)
            if not completions:
                continue
            groups.append(f'<div><b>prompt</b><pre>{html.escape(str(group.get("prompt", "")))}</pre>'
                          f'<span class="meta">answer: {html.escape(str(group.get("answer")))}; '
                          f'{count(completions)}</span></div>'
                          f'<table class="pair"><tr><th>best</th><th>worst</th></tr><tr>'
                          f'<td>{_completion_cell(completions[0])}</td><td>{_completion_cell(completions[-1])}</td></tr></table>')
        is_last = " open" if row is steps[-1] else ""
        parts.append(f'<details{is_last}><summary>step {row["step"]}</summary>{"".join(groups)}</details>')
    return "".join(parts) or "<p>No samples logged (output.samples_every).</p>"


def write_report(run_dir: Path, rows: list[dict], summary: str, guard_metric: str) -> Path:
    """Write RUN/report.html (whole, through a temporary file) from the metrics rows and samples.jsonl;
    ``guard_metric``: the sampler gap's key (envkit.train.guard.GuardLimits.metric)."""
    name = html.escape(run_dir.resolve().name)
    data = json.dumps({"panels": chart_data(rows, guard_metric)}).replace("</", "<\\/").replace("<!--", "<\\!--")
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>envkit run: {name}</title>'
            f"<style>{STYLE}</style></head><body><h1>envkit run: {name}</h1>"
            f'<p class="meta">{html.escape(summary)}</p><p class="meta" id="status">charts need JavaScript</p>'
            f'<div id="charts"></div><h2>Samples</h2>{samples_html(read_samples(run_dir))}'
            f'<script type="application/json" id="run-data">{data}</script><script>{SCRIPT}</script></body></html>\n')
    target = run_dir / REPORT
    write_owned(target, page)
    return target
