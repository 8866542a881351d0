// The status page's small charts: replication lag per Standby and publishes per second on the
// Active over the last five minutes (or since the page opened), kept as series of samples from
// the status stream and drawn as inline SVG, each with a text summary for screen readers and for
// anyone who would rather read a number.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
/** How far back the charts reach. */
const CHART_WINDOW_MS = 5 * 60 * 1000;
/** The shortest span a publish rate is measured over. */
const RATE_SPAN_MS = 1000;
const CHART_WIDTH = 320;
const CHART_HEIGHT = 90;

/** Samples of one quantity over time, the oldest dropped once out of the window. */
class Series {
  constructor() {
    this.points = [];
  }
  push(timeMs, value) {
    this.points.push([timeMs, value]);
    const oldest = timeMs - CHART_WINDOW_MS;
    while (this.points.length > 0 && this.points[0][0] < oldest) {
      this.points.shift();
    }
  }
  last() {
    return this.points.length ? this.points[this.points.length - 1][1] : 0;
  }
  max() {
    return this.points.reduce((m, p) => Math.max(m, p[1]), 0);
  }
}

function svg(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) {
    el.setAttribute(k, String(v));
  }
  return el;
}

/** A round upper bound for the y axis, so the scale does not twitch with every sample. */
function niceMax(v) {
  if (v <= 1) {
    return 1;
  }
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) {
    if (v <= m * p) {
      return m * p;
    }
  }
  return 10 * p;
}

/**
 * A figure with a title, the SVG line of `series` ending at `nowMs`, and a text summary.
 * `unit` names the value ("ms", "/s"); `summary` is the sentence under the chart.
 */
function chartFigure(id, title, series, nowMs, unit, summary) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.id = id;
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  fig.append(cap);

  const top = niceMax(series.max());
  const pad = { l: 44, r: 6, t: 8, b: 16 };
  const w = CHART_WIDTH - pad.l - pad.r;
  const h = CHART_HEIGHT - pad.t - pad.b;
  const root = svg("svg", {
    viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`,
    width: CHART_WIDTH,
    height: CHART_HEIGHT,
    role: "img",
    "aria-label": `${title}: ${summary}`,
  });
  root.append(svg("rect", { x: pad.l, y: pad.t, width: w, height: h, class: "plot" }));
  for (const [frac, label] of [[0, `${top} ${unit}`], [1, `0 ${unit}`]]) {
    const y = pad.t + frac * h;
    root.append(svg("line", { x1: pad.l, x2: pad.l + w, y1: y, y2: y, class: "gridline" }));
    const t = svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" });
    t.textContent = label;
    root.append(t);
  }
  // Until the page has watched for the whole window, the axis spans what it has seen.
  const first = series.points.length ? series.points[0][0] : nowMs;
  const span = Math.max(10000, Math.min(CHART_WINDOW_MS, nowMs - first));
  const left = svg("text", { x: pad.l, y: CHART_HEIGHT - 3, class: "axis" });
  left.textContent = span >= 60000 ? `${Math.round(span / 60000)} min ago` : `${Math.round(span / 1000)} s ago`;
  const right = svg("text", { x: pad.l + w, y: CHART_HEIGHT - 3, "text-anchor": "end", class: "axis" });
  right.textContent = "now";
  root.append(left, right);

  const coords = series.points.map(([t, v]) => {
    const x = pad.l + w * (1 - Math.min(1, Math.max(0, (nowMs - t) / span)));
    const y = pad.t + h * (1 - v / top);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  if (coords.length > 0) {
    root.append(svg("polyline", { points: coords.join(" "), class: "line" }));
  }
  fig.append(root);
  const p = document.createElement("p");
  p.className = "chart-summary";
  p.textContent = summary;
  fig.append(p);
  return fig;
}

/** What the charts remember between samples. */
const charts = {
  lag: new Map(), // Standby name -> Series of lag_ms
  lagRevisions: new Map(), // Standby name -> last lag in revisions
  publishes: new Series(),
  heads: [], // [time_ms, head seq] of the samples taken as the Active, the last RATE_SPAN_MS or so

  /** Takes one `status` event of the stream. */
  record(sample) {
    const s = sample.status;
    const now = sample.time_ms;
    if (s.node.role === "active") {
      for (const p of s.peers) {
        if (!charts.lag.has(p.name)) {
          charts.lag.set(p.name, new Series());
        }
        charts.lag.get(p.name).push(now, p.lag_ms);
        charts.lagRevisions.set(p.name, p.lag_revisions);
      }
    }
    if (s.node.role !== "active") {
      charts.heads = [];
      return;
    }
    // Samples come on every change as well as every 500 ms: a rate between two of them a few
    // milliseconds apart would be noise, so it is taken over at least RATE_SPAN_MS.
    charts.heads.push([now, s.head.seq]);
    while (charts.heads.length > 1 && now - charts.heads[1][0] >= RATE_SPAN_MS) {
      charts.heads.shift();
    }
    const [then, seq] = charts.heads[0];
    if (now - then >= RATE_SPAN_MS) {
      const rate = (Math.max(0, s.head.seq - seq) * 1000) / (now - then);
      charts.publishes.push(now, Math.round(rate * 10) / 10);
    }
  },

  /** Redraws every chart into `box` for the sample just recorded. */
  draw(box, sample) {
    const s = sample.status;
    const now = sample.time_ms;
    const figures = [];
    if (s.node.role === "active") {
      const rate = charts.publishes.last();
      figures.push(
        chartFigure("chart-publishes", `Publishes per second on ${s.node.name} (Active)`, charts.publishes, now, "/s",
          `now ${rate}/s, highest ${charts.publishes.max()}/s`)
      );
      for (const p of byName(s.peers)) {
        const series = charts.lag.get(p.name);
        if (!series) {
          continue;
        }
        const revs = charts.lagRevisions.get(p.name) || 0;
        figures.push(
          chartFigure(`chart-lag-${p.name}`, `Replication lag of ${p.name}`, series, now, "ms",
            `now ${series.last()} ms (${revs} revision${revs === 1 ? "" : "s"} behind), highest ${series.max()} ms`)
        );
      }
    } else {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent =
        `This node is a Standby: the Active${s.active ? ` (${s.active})` : ""} measures the lag of its Standbys ` +
        "and counts publishes. Open the page on the Active to see them.";
      figures.push(p);
    }
    box.replaceChildren(...figures);
  },
};
