// The dashboard shell: login (and the forced password change), routing between the overview and a
// site page, and keeping the shown view live: a refresh every 10 s and on every alert change.

import * as api from "./api.js";
import { fill, h } from "./dom.js";
import { language, onLanguageChange, setLanguage, t, translateStatic } from "./i18n.js";
import { OverviewView } from "./overview.js";
import { DEFAULT_RANGE, SiteView } from "./site.js";

const REFRESH_MS = 10_000;
const ALERT_DEBOUNCE_MS = 250; // a burst of alert events (a snapshot, several changes) makes one refresh

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const updated = document.getElementById("updated");
const logoutButton = document.getElementById("logout");
const languageSelect = document.getElementById("lang");

let view = null;
let timer = null;
let closeStream = null;
let alertTimer = null;
let refreshing = null;
let refreshAgain = false;
let lastUpdate = null;

function showError(message) {
  errorBox.textContent = message ?? "";
  errorBox.hidden = !message;
}

function showUpdated() {
  updated.textContent = lastUpdate
    ? t("live.updated", { time: lastUpdate.toLocaleTimeString(language(), { hourCycle: "h23" }) })
    : "";
}

// ------------------------------------------------------------------------------------ login

function showLogin() {
  stopLive();
  logoutButton.hidden = true;
  const message = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card login", id: "login-form" },
    h("h1", {}, t("login.title")),
    h("label", {}, t("login.username"), h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, t("login.password"), h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, t("login.submit")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const principal = await api.login(data.get("username"), data.get("password"));
      if (principal.must_change_password) showPasswordChange(String(data.get("password")));
      else start();
    } catch (error) {
      message.textContent = t("login.failed", { detail: error.message });
    }
  });
  fill(main, form);
  form.elements.username.focus();
}

function showPasswordChange(currentPassword = "") {
  stopLive();
  logoutButton.hidden = false;
  const message = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card login", id: "password-form" },
    h("h1", {}, t("password.title")),
    h("p", {}, t("password.why")),
    h("label", {}, t("password.current"), h("input", { name: "current", type: "password", autocomplete: "current-password", required: true, value: currentPassword })),
    h("label", {}, t("password.new"), h("input", { name: "new", type: "password", autocomplete: "new-password", required: true })),
    h("label", {}, t("password.repeat"), h("input", { name: "repeat", type: "password", autocomplete: "new-password", required: true })),
    h("button", { type: "submit" }, t("password.submit")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    if (data.get("new") !== data.get("repeat")) {
      message.textContent = t("password.mismatch");
      return;
    }
    try {
      await api.changePassword(data.get("current"), data.get("new"));
      start();
    } catch (error) {
      const detail = Array.isArray(error.detail) ? error.detail.map((d) => d.msg).join("; ") : error.message;
      message.textContent = t("password.failed", { detail });
    }
  });
  fill(main, form);
}

// ------------------------------------------------------------------------------------ views

function parseHash() {
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const match = path.match(/^\/site\/([^/]+)$/);
  if (match) {
    const range = new URLSearchParams(search ?? "").get("range") ?? DEFAULT_RANGE;
    return { name: "site", siteId: decodeURIComponent(match[1]), range };
  }
  return { name: "overview" };
}

function route() {
  view?.close();
  const target = parseHash();
  const root = h("div", { class: "view", dataset: { view: target.name } });
  fill(main, root);
  view =
    target.name === "site"
      ? new SiteView(root, target.siteId, target.range, (range) => {
          location.hash = `#/site/${encodeURIComponent(target.siteId)}?range=${range}`;
        })
      : new OverviewView(root);
  refresh();
}

/** Refresh the shown view; a request for a refresh while one runs makes one more after it. */
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  const current = view;
  refreshing = (async () => {
    try {
      await current.refresh();
      showError(null);
      lastUpdate = new Date();
      showUpdated();
    } catch (error) {
      if (error instanceof api.ApiError && error.status === 401) {
        showLogin();
        return;
      }
      if (error instanceof api.ApiError && error.status === 403 && /password/i.test(error.message)) {
        showPasswordChange();
        return;
      }
      showError(t("error.load", { detail: error.message }));
    }
  })();
  await refreshing;
  refreshing = null;
  if (refreshAgain && view) {
    refreshAgain = false;
    await refresh();
  }
}

// ------------------------------------------------------------------------------------ live updates

function start() {
  logoutButton.hidden = false;
  stopLive();
  closeStream = api.alertStream(() => {
    clearTimeout(alertTimer);
    alertTimer = setTimeout(refresh, ALERT_DEBOUNCE_MS);
  });
  timer = setInterval(refresh, REFRESH_MS);
  window.addEventListener("hashchange", route);
  route();
}

function stopLive() {
  clearInterval(timer);
  clearTimeout(alertTimer);
  closeStream?.();
  closeStream = null;
  window.removeEventListener("hashchange", route);
  view?.close();
  view = null;
  lastUpdate = null;
  showUpdated();
}

// ------------------------------------------------------------------------------------ boot

languageSelect.value = language();
languageSelect.addEventListener("change", () => setLanguage(languageSelect.value));
onLanguageChange(() => {
  translateStatic();
  showUpdated();
  if (view) view.render();
  else if (document.getElementById("login-form")) showLogin();
});
logoutButton.addEventListener("click", async () => {
  stopLive();
  try {
    await api.logout();
  } finally {
    showLogin();
  }
});
translateStatic();

async function boot() {
  if (!api.hasSessionHint()) {
    showLogin();
    return;
  }
  try {
    const principal = await api.me();
    if (principal.must_change_password) showPasswordChange();
    else start();
  } catch {
    showLogin();
  }
}

boot();
