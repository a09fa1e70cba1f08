// Texts in zh-CN and en, and number and time formatting in the chosen language. The choice is kept in
// localStorage; the first visit follows the browser's language.

const STORAGE_KEY = "peakwatch.lang";
export const LANGUAGES = ["zh-CN", "en"];

const en = {
  "app.title": "peakwatch",
  "app.subtitle": "Energy and carbon, live",
  "nav.overview": "Overview",
  "nav.logout": "Log out",
  "nav.language": "Language",
  "login.title": "Log in",
  "login.username": "User name",
  "login.password": "Password",
  "login.submit": "Log in",
  "login.failed": "Login failed: {detail}",
  "password.title": "Choose a new password",
  "password.why": "Your password was set for one use only. Choose your own to continue.",
  "password.current": "Current password",
  "password.new": "New password",
  "password.repeat": "New password again",
  "password.mismatch": "The two new passwords differ.",
  "password.submit": "Change password",
  "password.failed": "Not changed: {detail}",
  "overview.title": "All sites",
  "overview.empty": "No sites in your scope.",
  "col.site": "Site",
  "col.kind": "Kind",
  "col.pue": "PUE",
  "col.electrification": "Electrification rate",
  "col.carbon": "Carbon intensity (kgCO2/kWh)",
  "col.green": "Green-power share",
  "col.window": "Latest window",
  "col.status": "Status",
  "col.alerts": "Active alerts",
  "kind.park": "Park",
  "kind.data_centre": "Data centre",
  "status.fresh": "Live",
  "status.stale": "Stale",
  "status.nodata": "No data",
  "site.back": "← All sites",
  "site.range": "Time range",
  "site.csv": "Download CSV",
  "site.latest": "Latest window {time} ({period})",
  "site.interim": "Values under 12 months are interim (ISO/IEC 30134-2).",
  "site.open": "In progress: {covered} of the window counted so far.",
  "site.nodata": "No closed window in this range yet.",
  "chart.pue": "PUE",
  "chart.pue.ref13": "1.3 (new large DCs)",
  "chart.pue.ref15": "1.5 (retrofit line)",
  "chart.carbon": "Carbon intensity, kgCO2/kWh",
  "chart.demand": "Demand, kW",
  "chart.flows": "Micro-grid power flows, kW",
  "series.pue": "PUE",
  "series.carbon": "Carbon intensity",
  "series.demand": "Site load (kW, window mean)",
  "series.max_demand": "Billed demand (15-min max, kW)",
  "series.renewable": "PV + wind generation",
  "series.import": "Grid import",
  "series.export": "Grid export",
  "series.charge": "Storage charge",
  "series.discharge": "Storage discharge",
  "series.load": "Site consumption",
  "series.it": "IT load",
  "meters.title": "Meter health",
  "meters.id": "Meter",
  "meters.role": "Role",
  "meters.last_seen": "Last seen",
  "meters.last_value": "Last value",
  "meters.status": "Health",
  "meters.ok": "OK",
  "meters.stale": "Silent",
  "meters.never": "Never reported",
  "meters.gaps": "Windows with gaps in range: {gaps} of {windows}",
  "meters.flags": "Meter events in range: {flags}",
  "meters.noflags": "none",
  "alerts.title": "Firing alerts",
  "alerts.none": "No firing alerts.",
  "severity.critical": "critical",
  "severity.warning": "warning",
  "severity.info": "info",
  "role.facility_total": "facility total",
  "role.it_load": "IT load",
  "role.cooling": "cooling",
  "role.lighting": "lighting",
  "role.ups_losses": "UPS losses",
  "role.pv_generation": "PV generation",
  "role.wind_generation": "wind generation",
  "role.grid_import": "grid import",
  "role.grid_export": "grid export",
  "role.storage_charge": "storage charge",
  "role.storage_discharge": "storage discharge",
  "role.boiler": "boiler",
  "role.heat_pump": "heat pump",
  "alerts.ack": "Acknowledge",
  "alerts.acked": "Acknowledged by {user}",
  "alerts.since": "since {time}",
  "alerts.ackfailed": "Not acknowledged: {detail}",
  "col.deadletters": "Refused input (24 h)",
  "deadletters.title": "Refused input, last 24 hours",
  "deadletters.none": "No refused input in the last 24 hours.",
  "deadletters.reason": "Reason",
  "deadletters.code": "Code",
  "deadletters.count": "Messages",
  "deadletters.total": "Total",
  "deadletters.nosite": "of which of no site (bad topic): {count}",
  "deadletters.help": "Each number opens the refused messages in the API, newest first.",
  "reason.payload_too_large": "Payload too large",
  "reason.bad_topic": "Bad topic",
  "reason.unknown_site": "Unknown site",
  "reason.unknown_meter": "Unregistered meter (quarantine)",
  "reason.malformed_json": "Malformed JSON",
  "reason.empty_batch": "Empty batch",
  "reason.not_an_object": "Not a JSON object",
  "reason.missing_ts": "Missing timestamp",
  "reason.bad_ts": "Bad timestamp",
  "reason.ts_in_future": "Timestamp in the future",
  "reason.ts_too_old": "Timestamp too old",
  "reason.no_quantity": "No quantity",
  "reason.unknown_field": "Unknown field",
  "reason.wrong_type": "Wrong type",
  "reason.non_finite": "Not a finite number",
  "reason.conflicting_fields": "Conflicting fields",
  "reason.negative_register": "Negative register",
  "reason.internal_error": "Internal error",
  "reason.negative_interval_amount": "Negative interval amount",
  "error.load": "Could not load data: {detail}",
  "live.updated": "Updated {time}",
  "na": "—",
};

const zh = {
  "app.title": "peakwatch 峰值监测",
  "app.subtitle": "能耗与碳排放实时监测",
  "nav.overview": "总览",
  "nav.logout": "退出登录",
  "nav.language": "语言",
  "login.title": "登录",
  "login.username": "用户名",
  "login.password": "密码",
  "login.submit": "登录",
  "login.failed": "登录失败：{detail}",
  "password.title": "设置新密码",
  "password.why": "当前密码为一次性密码，请设置您自己的密码后继续。",
  "password.current": "当前密码",
  "password.new": "新密码",
  "password.repeat": "再次输入新密码",
  "password.mismatch": "两次输入的新密码不一致。",
  "password.submit": "修改密码",
  "password.failed": "修改失败：{detail}",
  "overview.title": "全部站点",
  "overview.empty": "您的权限范围内没有站点。",
  "col.site": "站点",
  "col.kind": "类型",
  "col.pue": "PUE",
  "col.electrification": "电气化率",
  "col.carbon": "碳排放强度（kgCO2/kWh）",
  "col.green": "绿电占比",
  "col.window": "最新窗口",
  "col.status": "状态",
  "col.alerts": "活动告警",
  "kind.park": "园区",
  "kind.data_centre": "数据中心",
  "status.fresh": "实时",
  "status.stale": "数据陈旧",
  "status.nodata": "暂无数据",
  "site.back": "← 全部站点",
  "site.range": "时间范围",
  "site.csv": "下载 CSV",
  "site.latest": "最新窗口 {time}（{period}）",
  "site.interim": "不足 12 个月的数值为临时值（ISO/IEC 30134-2）。",
  "site.open": "进行中：已计入窗口的 {covered}。",
  "site.nodata": "该时间范围内尚无已关闭的窗口。",
  "chart.pue": "PUE",
  "chart.pue.ref13": "1.3（新建大型数据中心）",
  "chart.pue.ref15": "1.5（改造线）",
  "chart.carbon": "碳排放强度，kgCO2/kWh",
  "chart.demand": "用电需量，kW",
  "chart.flows": "微电网功率流，kW",
  "series.pue": "PUE",
  "series.carbon": "碳排放强度",
  "series.demand": "站点负荷（kW，窗口均值）",
  "series.max_demand": "计费需量（15分钟最大，kW）",
  "series.renewable": "光伏 + 风电发电",
  "series.import": "电网购电",
  "series.export": "上网电量",
  "series.charge": "储能充电",
  "series.discharge": "储能放电",
  "series.load": "站点用电",
  "series.it": "IT 负载",
  "meters.title": "计量表健康状况",
  "meters.id": "计量表",
  "meters.role": "用途",
  "meters.last_seen": "最后上报",
  "meters.last_value": "最新读数",
  "meters.status": "状态",
  "meters.ok": "正常",
  "meters.stale": "静默",
  "meters.never": "从未上报",
  "meters.gaps": "范围内有缺数的窗口：{gaps} / {windows}",
  "meters.flags": "范围内的计量事件：{flags}",
  "meters.noflags": "无",
  "alerts.title": "触发中的告警",
  "alerts.none": "没有触发中的告警。",
  "severity.critical": "严重",
  "severity.warning": "警告",
  "severity.info": "提示",
  "role.facility_total": "总进线",
  "role.it_load": "IT负载",
  "role.cooling": "制冷",
  "role.lighting": "照明",
  "role.ups_losses": "UPS损耗",
  "role.pv_generation": "光伏发电",
  "role.wind_generation": "风电",
  "role.grid_import": "电网购电",
  "role.grid_export": "上网电量",
  "role.storage_charge": "储能充电",
  "role.storage_discharge": "储能放电",
  "role.boiler": "锅炉",
  "role.heat_pump": "热泵",
  "alerts.ack": "确认",
  "alerts.acked": "已由 {user} 确认",
  "alerts.since": "始于 {time}",
  "alerts.ackfailed": "确认失败：{detail}",
  "col.deadletters": "拒收数据（24 小时）",
  "deadletters.title": "近 24 小时被拒收的数据",
  "deadletters.none": "近 24 小时没有被拒收的数据。",
  "deadletters.reason": "原因",
  "deadletters.code": "代码",
  "deadletters.count": "消息数",
  "deadletters.total": "合计",
  "deadletters.nosite": "其中无站点（主题错误）：{count}",
  "deadletters.help": "点击数字可在 API 中查看对应的拒收消息（最新在前）。",
  "reason.payload_too_large": "负载过大",
  "reason.bad_topic": "主题格式错误",
  "reason.unknown_site": "未知站点",
  "reason.unknown_meter": "未注册的计量表（隔离）",
  "reason.malformed_json": "JSON 格式错误",
  "reason.empty_batch": "空批次",
  "reason.not_an_object": "不是 JSON 对象",
  "reason.missing_ts": "缺少时间戳",
  "reason.bad_ts": "时间戳无效",
  "reason.ts_in_future": "时间戳超前",
  "reason.ts_too_old": "时间戳过旧",
  "reason.no_quantity": "缺少计量值",
  "reason.unknown_field": "未知字段",
  "reason.wrong_type": "类型错误",
  "reason.non_finite": "非有限数值",
  "reason.conflicting_fields": "字段冲突",
  "reason.negative_register": "寄存器读数为负",
  "reason.internal_error": "内部错误",
  "reason.negative_interval_amount": "区间电量为负",
  "error.load": "数据加载失败：{detail}",
  "live.updated": "更新于 {time}",
  "na": "—",
};

const DICTIONARIES = { en, "zh-CN": zh };

function initialLanguage() {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (LANGUAGES.includes(stored)) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

let current = initialLanguage();
const listeners = new Set();

export const language = () => current;

export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang) || lang === current) return;
  current = lang;
  localStorage.setItem(STORAGE_KEY, lang);
  document.documentElement.lang = lang;
  listeners.forEach((listener) => listener(lang));
}

/** Call `listener(lang)` after each language change. */
export const onLanguageChange = (listener) => listeners.add(listener);

/** The text for `key` with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = DICTIONARIES[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** Fill every `[data-i18n]` element under `root` with its text (the static parts of the page). */
/** A value the API sends (a severity, a meter role) in the current language, or as it is when the
 * dictionary has no word for it (a severity a rule made up). */
export function term(kind, value) {
  const key = `${kind}.${value}`;
  return DICTIONARIES[current][key] ?? en[key] ?? value;
}

export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return t("na");
  return new Intl.NumberFormat(current, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(
    value,
  );
}

export function percent(value) {
  if (value === null || value === undefined) return t("na");
  return new Intl.NumberFormat(current, { style: "percent", maximumFractionDigits: 1 }).format(value);
}

/** A wall-clock time in the site's time zone (the sites run on local time, the browser may not). */
export function dateTime(ms, timeZone, withDate = true) {
  if (ms === null || ms === undefined) return t("na");
  const options = { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (withDate) Object.assign(options, { month: "2-digit", day: "2-digit" });
  return new Intl.DateTimeFormat(current, options).format(new Date(ms));
}

document.documentElement.lang = current;
