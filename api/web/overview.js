// Overview: every site in the caller's scope with its latest 1-minute KPIs, whether data is flowing,
// how many of its alerts are firing and how much of its input was refused; below, the refused input of
// the last 24 hours by reason, each count a link to those messages.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { dateTime, number, percent, t, term } from "./i18n.js";

export const STALE_AFTER_MS = 5 * 60_000;
export const DEAD_LETTER_WINDOW_MS = 24 * 3_600_000;
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
    const refusedSince = Date.now() - DEAD_LETTER_WINDOW_MS;
    const [latest, firing, refused] = await Promise.all([
      Promise.all(sites.map((s) => api.recentKpis(s.id))),
      api.alerts({ state: "firing" }),
      api.deadLetterCounts(refusedSince),
    ]);
    const alertCounts = new Map();
    for (const alert of firing) alertCounts.set(alert.site_id, (alertCounts.get(alert.site_id) ?? 0) + 1);
    this.data = { sites, latest, alertCounts, refused, refusedSince };
    this.render();
  }

  render() {
    if (!this.data) return;
    const { sites, latest, alertCounts, refused } = this.data;
    const refusedBySite = new Map(refused.by_site.map((s) => [s.site_id, s.count]));
    const rows = sites.map((site, i) => this.row(site, latest[i], alertCounts.get(site.id) ?? 0, refusedBySite.get(site.id) ?? 0));
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
                ["col.site", "col.kind", "col.pue", "col.electrification", "col.carbon", "col.green", "col.window", "col.status", "col.alerts", "col.deadletters"].map(
                  (key) => h("th", {}, t(key)),
                ),
              ),
            ),
            h("tbody", {}, rows),
          ),
      this.deadLetters(),
    );
  }

  /** A count of refused messages, linked to the list of them in the API when there are any. */
  refusedLink(count, filter) {
    if (!count) return String(count);
    const href = api.deadLettersUrl({ ...filter, from: this.data.refusedSince });
    return h("a", { href, target: "_blank", rel: "noopener" }, number(count, 0));
  }

  /** The last 24 hours' refused input by reason (docs/ingest.md lists the reasons). */
  deadLetters() {
    const { refused } = this.data;
    const noSite = refused.by_site.find((s) => s.site_id === null)?.count ?? 0;
    return h(
      "section",
      { class: "card dead-letters", id: "dead-letters", dataset: { total: refused.total } },
      h("h2", {}, t("deadletters.title")),
      refused.total === 0
        ? h("p", { class: "muted" }, t("deadletters.none"))
        : [
            h(
              "table",
              {},
              h("thead", {}, h("tr", {}, ["deadletters.reason", "deadletters.code", "deadletters.count"].map((key) => h("th", {}, t(key))))),
              h(
                "tbody",
                {},
                refused.by_reason.map((r) =>
                  h(
                    "tr",
                    { dataset: { reason: r.reason } },
                    h("td", {}, term("reason", r.reason)),
                    h("td", {}, h("code", {}, r.reason)),
                    h("td", { class: "num", dataset: { count: r.count } }, this.refusedLink(r.count, { reason: r.reason })),
                  ),
                ),
                h(
                  "tr",
                  { class: "total" },
                  h("td", {}, t("deadletters.total")),
                  h("td", {}),
                  h("td", { class: "num", dataset: { count: refused.total } }, this.refusedLink(refused.total, {})),
                ),
              ),
            ),
            noSite ? h("p", { class: "muted", dataset: { nosite: noSite } }, t("deadletters.nosite", { count: number(noSite, 0) })) : null,
            h("p", { class: "muted" }, t("deadletters.help")),
          ],
    );
  }

  row(site, latest, alertCount, refusedCount) {
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
      h("td", { class: "num", dataset: { kpi: "dead_letters" } }, this.refusedLink(refusedCount, { site_id: site.id })),
    );
  }

  close() {}
}
