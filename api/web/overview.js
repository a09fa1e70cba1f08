// Overview: every site in the caller's scope with its latest 1-minute KPIs, whether data is flowing,
// and how many of its alerts are firing.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { dateTime, number, percent, t } from "./i18n.js";

export const STALE_AFTER_MS = 5 * 60_000;
// Same threshold as the meters' `stale` status: a 1-minute window older than this means readings stopped.

export function siteStatus(latest, nowMs = Date.now()) {
  if (!latest) return "nodata";
  return nowMs - latest.window_end_ms > STALE_AFTER_MS ? "stale" : "fresh";
}

export class OverviewView {
  constructor(root) {
    this.root = root;
    this.data = null;
  }

  async refresh() {
    const sites = await api.sites();
    const [latest, firing] = await Promise.all([
      Promise.all(sites.map((s) => api.recentKpis(s.id))),
      api.alerts({ state: "firing" }),
    ]);
    const alertCounts = new Map();
    for (const alert of firing) alertCounts.set(alert.site_id, (alertCounts.get(alert.site_id) ?? 0) + 1);
    this.data = { sites, latest, alertCounts };
    this.render();
  }

  render() {
    if (!this.data) return;
    const { sites, latest, alertCounts } = this.data;
    const rows = sites.map((site, i) => this.row(site, latest[i], alertCounts.get(site.id) ?? 0));
    fill(
      this.root,
      h("h1", {}, t("overview.title")),
      sites.length === 0
        ? h("p", { class: "muted" }, t("overview.empty"))
        : h(
            "table",
            { class: "sites" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["col.site", "col.kind", "col.pue", "col.electrification", "col.carbon", "col.green", "col.window", "col.status", "col.alerts"].map(
                  (key) => h("th", {}, t(key)),
                ),
              ),
            ),
            h("tbody", {}, rows),
          ),
    );
  }

  row(site, latest, alertCount) {
    const status = siteStatus(latest);
    const kpi = (name, text) => h("td", { class: "num", dataset: { kpi: name } }, text);
    return h(
      "tr",
      { dataset: { site: site.id, windowMs: latest ? latest.window_start_ms : "" } },
      h("td", {}, h("a", { href: `#/site/${encodeURIComponent(site.id)}` }, site.name)),
      h("td", {}, t(`kind.${site.kind}`)),
      kpi("pue", number(latest?.pue)),
      kpi("electrification_rate", percent(latest?.electrification_rate)),
      kpi("carbon_intensity", number(latest?.carbon_intensity_kg_per_kwh, 3)),
      kpi("green_power_share", percent(latest?.green_power_share)),
      h("td", { dataset: { kpi: "window" } }, latest ? dateTime(latest.window_start_ms, site.timezone) : t("na")),
      h("td", {}, h("span", { class: `badge ${status}`, dataset: { status } }, t(`status.${status}`))),
      h("td", { class: "num", dataset: { kpi: "alerts" } }, h("span", { class: alertCount ? "badge alert" : "" }, String(alertCount))),
    );
  }

  close() {}
}
