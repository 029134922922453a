// @ts-check
/// <reference lib="dom" />
// The report page's own script: runs in the browser, not in Node. html.ts inlines this file as it
// is, after uPlot; plain JavaScript, so no build step stands between it and the page, and
// type-checked (JSDoc, DOM types) against the data html.ts embeds and the state chromium.ts reads.

/**
 * @typedef {import("./series.ts").ReportSeries} ReportSeries
 * @typedef {import("./html.ts").ReportPageState} ReportPageState
 * @typedef {ReportPageState["charts"][number]} ChartRecord
 * @typedef {typeof import("./html.ts").REPORT_COLORS} ReportColors
 * @typedef {{ label: string; values: (number | null)[]; stroke: string; dash?: number[] }} ChartSeries
 * @typedef {{ id: string; title: string; series: (ChartSeries | null)[] }} ChartSpec
 * @typedef {import("uplot")} UPlot
 */

(() => {
  /** @type {ReportPageState} */
  const state = { charts: [], errors: [] };
  const publish = () => {
    document.body.dataset.report = JSON.stringify(state);
  };
  window.addEventListener("error", (e) => {
    state.errors.push(String(e.message));
    publish();
  });
  try {
    /** @type {{ series: ReportSeries; colors: ReportColors }} */
    const D = JSON.parse(document.getElementById("report-data")?.textContent ?? "");
    const S = D.series;
    const C = D.colors;
    const MiB = 1024 * 1024;
    /** The global of the uPlot IIFE build, inlined before this script. @type {typeof import("uplot")} */
    const UPlot = /** @type {any} */ (window).uPlot;
    /** @type {Record<string, string>} */
    const STATUS = {
      setup: "#adb5bd",
      active: "#74c0fc",
      "pre-switchover": "#ffd43b",
      device: "#ffa94d",
      "postcopy-active": "#b197fc",
      completed: "#8ce99a",
      failed: "#ff8787",
      cancelling: "#ced4da",
      cancelled: "#ced4da",
    };
    /** @param {string} s */
    const statusColor = (s) => STATUS[s] || "#e9ecef";
    const legend = /** @type {HTMLElement} */ (document.getElementById("status-legend"));
    for (const b of S.statusBands) {
      if (legend.querySelector(`[data-status="${b.status}"]`)) continue;
      const span = document.createElement("span");
      span.dataset.status = b.status;
      span.textContent = b.status;
      span.style.background = statusColor(b.status);
      legend.appendChild(span);
    }
    /** Status bands behind the plot. @param {UPlot} u */
    const bands = (u) => {
      const ctx = u.ctx;
      const bb = u.bbox;
      ctx.save();
      ctx.globalAlpha = 0.18;
      for (const b of S.statusBands) {
        const x0 = Math.max(bb.left, u.valToPos(b.from, "x", true));
        const x1 = Math.min(bb.left + bb.width, u.valToPos(b.to, "x", true));
        if (x1 <= x0) continue;
        ctx.fillStyle = statusColor(b.status);
        ctx.fillRect(x0, bb.top, x1 - x0, bb.height);
      }
      ctx.restore();
    };
    /** MIGRATION_PASS markers over the plot. @param {UPlot} u */
    const passes = (u) => {
      const ctx = u.ctx;
      const bb = u.bbox;
      const dpr = window.devicePixelRatio || 1;
      ctx.save();
      ctx.strokeStyle = "#343a40";
      ctx.fillStyle = "#343a40";
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.lineWidth = dpr;
      ctx.font = `${10 * dpr}px sans-serif`;
      for (const p of S.passes) {
        const x = Math.round(u.valToPos(p.t, "x", true));
        if (x < bb.left || x > bb.left + bb.width) continue;
        ctx.beginPath();
        ctx.moveTo(x, bb.top);
        ctx.lineTo(x, bb.top + bb.height);
        ctx.stroke();
        ctx.fillText(`p${p.pass}`, x + 2 * dpr, bb.top + 10 * dpr);
      }
      ctx.restore();
    };
    // The x axis spans the whole migration (setup included), not only the RAM snapshots.
    const x0 = Math.min(S.t[0] || 0, S.statusBands[0]?.from ?? Infinity);
    let x1 = Math.max(S.end, S.t[S.t.length - 1] || 0);
    if (!(x1 > x0)) x1 = x0 + 1;
    /** @param {number | null} v */
    const mib = (v) => (v == null ? null : v / MiB);
    /** @type {ChartSpec[]} */
    const specs = [
      {
        id: "remaining",
        title: "Remaining (MiB)",
        series: [
          { label: "RAM remaining", values: S.ramRemaining.map(mib), stroke: C.ramRemaining },
          S.hasSystemRemaining
            ? {
                label: "system-wide remaining",
                values: S.systemRemaining.map(mib),
                stroke: C.systemRemaining,
              }
            : null,
        ],
      },
      {
        id: "throughput",
        title: "Throughput (Mbps)",
        series: [{ label: "mbps", values: S.mbps, stroke: C.mbps }],
      },
      {
        id: "dirty-rate",
        title: "Dirty pages rate (pages/s)",
        series: [{ label: "dirty-pages-rate", values: S.dirtyPagesRate, stroke: C.dirtyPagesRate }],
      },
      {
        id: "downtime",
        title: "Expected downtime vs downtime-limit (ms)",
        series: [
          { label: "expected-downtime", values: S.expectedDowntime, stroke: C.expectedDowntime },
          {
            label: `downtime-limit ${S.downtimeLimitMs} ms`,
            values: S.t.map(() => S.downtimeLimitMs),
            stroke: C.downtimeLimit,
            dash: [6, 4],
          },
        ],
      },
    ];
    for (const spec of specs) {
      const el = /** @type {HTMLElement} */ (document.getElementById(`chart-${spec.id}`));
      const list = spec.series.filter((s) => s !== null);
      const present = list.filter((s) => s.values.some((v) => v != null));
      /** @type {ChartRecord} */
      const rec = {
        id: spec.id,
        draws: 0,
        empty: present.length === 0,
        colors: present.map((s) => s.stroke),
      };
      state.charts.push(rec);
      if (S.t.length === 0) {
        const p = document.createElement("div");
        p.className = "empty";
        p.textContent = `${spec.title}: the source recorded no RAM statistics`;
        el.appendChild(p);
        continue;
      }
      /** @type {import("uplot").Options} */
      const opts = {
        title: spec.title,
        width: 1200,
        height: 240,
        scales: { x: { time: false, range: () => [x0, x1] } },
        axes: [{ label: "seconds since start" }, { size: 70 }],
        series: [
          { label: "t (s)" },
          ...list.map((s) => ({
            label: s.label,
            stroke: s.stroke,
            width: 2,
            dash: s.dash,
            spanGaps: false,
            points: { show: false },
          })),
        ],
        hooks: {
          drawClear: [bands],
          draw: [
            (u) => {
              passes(u);
              rec.draws++;
              const r = u.over.getBoundingClientRect();
              rec.rect = {
                x: r.left + window.scrollX,
                y: r.top + window.scrollY,
                width: r.width,
                height: r.height,
              };
              publish();
            },
          ],
        },
      };
      new UPlot(
        opts,
        /** @type {import("uplot").AlignedData} */ ([S.t, ...list.map((s) => s.values)]),
        el,
      );
    }
  } catch (e) {
    state.errors.push(String((e instanceof Error && e.stack) || e));
  }
  publish();
})();
