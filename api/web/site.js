// Site page: KPI charts over a chosen time range, the micro-grid's power flows, meter health, and the
// site's firing alerts with an Acknowledge button.

import * as api from "./api.js";
import { COLORS, lineChart } from "./charts.js";
import { fill, h } from "./dom.js";
import { dateTime, number, percent, t, term } from "./i18n.js";

const HOUR_MS = 3_600_000;
/** Range → span and the period whose windows give a readable number of points (60 to 360). */
export const RANGES = {
  "1h": { spanMs: HOUR_MS, period: "1m" },
  "6h": { spanMs: 6 * HOUR_MS, period: "1m" },
  "24h": { spanMs: 24 * HOUR_MS, period: "15m" },
  "7d": { spanMs: 7 * 24 * HOUR_MS, period: "1h" },
};
export const DEFAULT_RANGE = "1h";

/**
 * Average power of a window in kW: its energy over the time it covers (windows of any period; a window of
 * a period in progress covers only its closed minutes, `covered` of its length).
 */
const kw = (kwh, w) =>
  kwh === null || kwh === undefined || !(w.covered ?? 1) ? null : kwh / (((w.window_end_ms - w.window_start_ms) * (w.covered ?? 1)) / HOUR_MS);

export class SiteView {
  constructor(root, siteId, range, onRangeChange) {
    this.root = root;
    this.siteId = siteId;
    this.range = RANGES[range] ? range : DEFAULT_RANGE;
    this.onRangeChange = onRangeChange;
    this.data = null;
    this.ackErrors = new Map();
  }

  async refresh() {
    const { spanMs, period } = RANGES[this.range];
    const toMs = Date.now();
    const fromMs = toMs - spanMs;
    const [site, series, meters, alerts] = await Promise.all([
      api.site(this.siteId),
      api.kpiSeries(this.siteId, period, fromMs, toMs),
      api.meters(this.siteId),
      api.alerts({ site_id: this.siteId, state: "firing" }),
    ]);
    this.data = { site, series, meters, alerts, period, fromMs, toMs };
    this.render();
  }

  render() {
    if (!this.data) return;
    const { site, series, period, fromMs, toMs } = this.data;
    const latest = series.at(-1) ?? null;
    fill(
      this.root,
      h("p", {}, h("a", { href: "#/" }, t("site.back"))),
      h("h1", {}, site.name, " ", h("small", { class: "muted" }, t(`kind.${site.kind}`))),
      this.toolbar(api.kpiCsvUrl(site.id, period, fromMs, toMs)),
      this.tiles(site, latest),
      h("div", { class: "charts" }, this.charts(site, series)),
      h("div", { class: "panels" }, this.alertsPanel(site), this.metersPanel(site, series)),
    );
  }

  toolbar(csvUrl) {
    return h(
      "div",
      { class: "toolbar" },
      h("span", {}, t("site.range")),
      h(
        "div",
        { class: "ranges", role: "group" },
        Object.keys(RANGES).map((key) =>
          h(
            "button",
            {
              type: "button",
              "aria-pressed": String(key === this.range),
              dataset: { range: key },
              onclick: () => this.setRange(key),
            },
            key,
          ),
        ),
      ),
      h("a", { class: "button", href: csvUrl, download: "", dataset: { csv: "" } }, t("site.csv")),
    );
  }

  setRange(range) {
    if (range === this.range) return;
    this.range = range;
    this.onRangeChange(range);
  }

  tiles(site, latest) {
    const tile = (name, label, text) =>
      h("div", { class: "tile", dataset: { kpi: name } }, h("div", { class: "label" }, label), h("div", { class: "value" }, text));
    return h(
      "section",
      { class: "latest" },
      h(
        "p",
        { class: "muted", dataset: { windowMs: latest ? latest.window_start_ms : "" } },
        latest ? t("site.latest", { time: dateTime(latest.window_start_ms, site.timezone), period: latest.period }) : t("site.nodata"),
        latest?.interim ? ` ${t("site.interim")}` : "",
        latest?.status === "open" ? ` ${t("site.open", { covered: percent(latest.covered) })}` : "",
      ),
      h(
        "div",
        { class: "tiles" },
        site.kind === "data_centre" ? tile("pue", t("col.pue"), number(latest?.pue)) : null,
        tile("electrification_rate", t("col.electrification"), percent(latest?.electrification_rate)),
        tile("carbon_intensity", t("col.carbon"), number(latest?.carbon_intensity_kg_per_kwh, 3)),
        tile("green_power_share", t("col.green"), percent(latest?.green_power_share)),
        tile("demand", t("chart.demand"), number(latest ? kw(latest.electricity_kwh, latest) : null, 1)),
      ),
    );
  }

  charts(site, series) {
    const tz = site.timezone;
    const line = (label, color, value) => ({ label, color, points: series.map((w) => ({ t: w.window_start_ms, v: value(w) })) });
    const card = (title, chart) => h("section", { class: "card" }, h("h2", {}, title), chart);
    const out = [];
    if (site.kind === "data_centre") {
      out.push(
        card(
          t("chart.pue"),
          lineChart({
            name: "pue",
            timeZone: tz,
            series: [line(t("series.pue"), COLORS[0], (w) => w.pue)],
            refLines: [
              { value: 1.3, label: t("chart.pue.ref13"), color: "#2a9d4b" },
              { value: 1.5, label: t("chart.pue.ref15"), color: "#c23b3b" },
            ],
          }),
        ),
      );
    }
    out.push(
      card(
        t("chart.carbon"),
        lineChart({ name: "carbon", timeZone: tz, digits: 3, series: [line(t("series.carbon"), COLORS[1], (w) => w.carbon_intensity_kg_per_kwh)] }),
      ),
      card(t("chart.demand"), lineChart({ name: "demand", timeZone: tz, digits: 0, series: [
        line(t("series.demand"), COLORS[0], (w) => kw(w.electricity_kwh, w)),
        line(t("series.max_demand"), COLORS[1], (w) => w.max_demand_kw ?? null),
      ] })),
    );
    const flows = [line(t("series.load"), COLORS[5], (w) => kw(w.electricity_kwh, w))];
    if (series.some((w) => w.it_kwh !== null)) flows.push(line(t("series.it"), "#0b8a8a", (w) => kw(w.it_kwh, w)));
    const metered = (key) => series.some((w) => w.components?.[key] !== undefined);
    if (series.some((w) => w.renewable_generation_kwh > 0)) {
      flows.push(line(t("series.renewable"), COLORS[2], (w) => kw(w.renewable_generation_kwh, w)));
    }
    if (metered("grid_import_kwh")) flows.push(line(t("series.import"), COLORS[0], (w) => kw(w.grid_import_kwh, w)));
    if (series.some((w) => w.grid_export_kwh > 0)) flows.push(line(t("series.export"), COLORS[1], (w) => kw(w.grid_export_kwh, w)));
    if (metered("storage_charge_kwh")) {
      flows.push(line(t("series.charge"), COLORS[4], (w) => kw(w.components.storage_charge_kwh ?? null, w)));
      flows.push(line(t("series.discharge"), COLORS[3], (w) => kw(w.components.storage_discharge_kwh ?? null, w)));
    }
    out.push(card(t("chart.flows"), lineChart({ name: "flows", timeZone: tz, digits: 0, series: flows })));
    return out;
  }

  alertsPanel(site) {
    const items = this.data.alerts.map((alert) =>
      h(
        "li",
        { class: `alert ${alert.severity}`, dataset: { alertId: alert.id } },
        h("div", {}, h("strong", {}, alert.rule), " ", h("span", { class: `badge ${alert.severity}` }, term("severity", alert.severity))),
        h("div", {}, alert.summary),
        h("div", { class: "muted" }, t("alerts.since", { time: dateTime(alert.fired_ms ?? alert.started_ms, site.timezone) })),
        alert.acknowledged_by
          ? h("div", { class: "acked" }, t("alerts.acked", { user: alert.acknowledged_by }))
          : api.mayAcknowledge()
            ? h("button", { type: "button", class: "ack", onclick: (event) => this.acknowledge(alert.id, event.target) }, t("alerts.ack"))
            : null,
        this.ackErrors.has(alert.id) ? h("div", { class: "error" }, t("alerts.ackfailed", { detail: this.ackErrors.get(alert.id) })) : null,
      ),
    );
    return h(
      "section",
      { class: "card", id: "alerts" },
      h("h2", {}, t("alerts.title")),
      items.length ? h("ul", { class: "alerts" }, items) : h("p", { class: "muted" }, t("alerts.none")),
    );
  }

  async acknowledge(alertId, button) {
    button.disabled = true;
    try {
      const acknowledged = await api.acknowledge(alertId);
      this.ackErrors.delete(alertId);
      this.data.alerts = this.data.alerts.map((a) => (a.id === alertId ? acknowledged : a));
    } catch (error) {
      this.ackErrors.set(alertId, error.message);
    }
    this.render();
  }

  metersPanel(site, series) {
    // a window in progress expects its minutes still to come: a gap is what its closed minutes lack
    const gaps = series.filter((w) => w.completeness < (w.covered ?? 1)).length;
    const flags = [...new Set(series.flatMap((w) => w.flags))];
    const rows = this.data.meters.map((m) =>
      h(
        "tr",
        { dataset: { meter: m.id } },
        h("td", {}, m.id),
        h("td", {}, term("role", m.role)),
        h("td", {}, dateTime(m.last_seen_ms, site.timezone)),
        h("td", { class: "num" }, m.last_value === null ? t("na") : `${number(m.last_value, 1)} ${m.unit}`),
        h("td", {}, h("span", { class: `badge ${m.status}` }, t(`meters.${m.status}`))),
      ),
    );
    return h(
      "section",
      { class: "card", id: "meters" },
      h("h2", {}, t("meters.title")),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["meters.id", "meters.role", "meters.last_seen", "meters.last_value", "meters.status"].map((k) => h("th", {}, t(k))))),
        h("tbody", {}, rows),
      ),
      h("p", { class: "muted" }, t("meters.gaps", { gaps, windows: series.length })),
      h("p", { class: "muted" }, t("meters.flags", { flags: flags.length ? flags.join(", ") : t("meters.noflags") })),
    );
  }

  close() {}
}
