// supervisor.js — the hall supervisor's page: who waits for what, how each window is
// doing, today's waiting time hour by hour (an SVG drawn here), the open alerts (each
// acknowledged with one press; a crowd's alert opens the window it suggests), and
// opening or closing windows. Everything follows the hall's events live.

import {
  $, inHall, api, askToken, blobUrl, coalesce, el, explainToken, follow, lang, langButton, now, onTokenSubmit, syncClock,
  t, toast, token, translate, words,
} from "./kioskd.js";

const ROLE = "supervisor";
const LONG_WAIT_MIN = 30;       // an estimate this long is worth a look …
const VERY_LONG_WAIT_MIN = 60;  // … and this long needs a window opened
const COALESCE_MS = 300;
const STATS_EVERY_MS = 3000;    // statistics read the day's tickets: at most this often
const POLL_MS = 30000;          // a safety net under the events
const SVG = "http://www.w3.org/2000/svg";

words({
  zh: {
    title: "大厅管理", refresh: "刷新", dismiss: "知道了", tiles: "今日概况",
    "token.title": "需要管理员令牌", "token.label": "令牌", "token.submit": "确定",
    "token.missing": "这个页面需要大厅管理员的令牌。请输入令牌，或用带 #token=… 的地址打开。",
    "token.wrong": "这个令牌没有管理员权限（{detail}）。请输入管理员令牌。",
    "link.live": "● 实时连接", "link.lost": "● 连接中断，正在重连…",
    "tile.waiting": "正在等候", "tile.windows": "开放窗口", "tile.issued": "今日取号", "tile.served": "已办结",
    "tile.no_show": "未到", "tile.wait": "等候时间 中位 / 最长", "tile.alerts": "告警",
    "min": "{n} 分钟", "min.short": "{n} 分",
    "services.title": "各事项等候", "windows.title": "窗口负荷", "alerts.title": "未处理的告警",
    "export.title": "统计报表（CSV，可用 Excel 打开）", "export.from": "从", "export.to": "到",
    "export.by": "每行", "export.by_day": "每天一行", "export.by_range": "整段合计",
    "export.download": "下载", "export.working": "正在生成…", "export.done": "已下载 {name}",
    "export.failed": "未能生成报表：{detail}",
    "col.service": "事项", "col.waiting": "等候人数", "col.open": "开放窗口", "col.est": "预计等候", "col.note": "提示",
    "col.window": "窗口", "col.state": "状态", "col.current": "当前号码", "col.served": "今日办结",
    "col.no_show": "未到", "col.action": "操作",
    "note.long": "等候较长", "note.very_long": "等候很长，考虑开临时窗口", "note.no_window": "没有开放的窗口",
    "note.ok": "正常",
    "state.open": "开放", "state.paused": "暂停", "state.closed": "关闭",
    "temporary": "临时", "idle": "空闲",
    "ticket.called": "已呼叫 {m}", "ticket.serving": "办理中 {m}",
    "action.open": "开启", "action.close": "关闭",
    "confirm.open.title": "开启{name}？", "confirm.close.title": "关闭{name}？",
    "confirm.open.text": "开启后，{name}开始叫号，办理：{services}。",
    "confirm.close.text": "关闭后，{name}不再叫号，它的显示屏熄灭；正在等候的人由其他窗口办理。",
    "confirm.open.ok": "确定开启", "confirm.close.ok": "确定关闭", "confirm.cancel": "取消",
    "done.open": "{name}已开启", "done.close": "{name}已关闭",
    "failed.open": "没能开启{name}：{detail}", "failed.close": "没能关闭{name}：{detail}",
    "failed.open.short": "没能开启{name}，原因见窗口负荷", "failed.close.short": "没能关闭{name}，原因见窗口负荷",
    "chart.title": "今日等候时间（按小时）", "chart.p50": "中位数", "chart.max": "最长",
    "chart.empty": "今天还没有数据", "chart.empty.more": "有人取号并被叫号后，这里按小时显示等候时间。",
    "chart.axis": "分钟", "chart.hour": "{h}时", "chart.now": "现在",
    "chart.label": "今日每小时的等候时间：中位数和最长，单位分钟",
    "chart.bar": "{h}时 {what}：{n} 分钟（取号 {issued}，叫号 {called}）",
    "chart.summary": "{hours} 个小时有数据；最长一次等候 {max} 分钟，在 {h}时。",
    "chart.summary.none": "{hours} 个小时有取号，还没有人被叫号。",
    "alerts.none": "✓ 没有未处理的告警", "alert.raised": "{time} 起，已持续 {long}",
    "alert.kind.wait": "等候过长", "alert.kind.paused": "暂停过长", "alert.kind.load": "等候人数过多",
    "alert.kind.serve": "办理超时", "alert.kind.bad_rating": "差评",
    "alert.kind.paper_near_end": "打印纸将尽", "alert.kind.paper_out": "打印机缺纸",
    "alert.kind.cover_open": "打印机盖打开", "alert.kind.offline": "设备离线",
    "alert.kind.printer_offline": "打印机脱机",
    "alert.where.device": "设备 {id}",
    "alert.state.open": "未确认", "alert.state.acknowledged": "已确认",
    "alert.acked": "{who} 已于 {time} 确认", "alert.ack": "确认", "alert.ack.label": "确认告警：{what}",
    "alert.suggest": "建议开放 {name}", "alert.open_window": "开放{name}",
    "alert.acked.toast": "已确认：{what}", "alert.ack.failed": "没能确认：{detail}",
    "long.min": "{n} 分钟", "long.hour": "{h} 小时 {m} 分钟",
    "failed.read": "{what}取不到：{detail}", "read.queue": "排队情况", "read.stats": "今日统计",
    "read.alerts": "告警",
  },
  en: {
    title: "Hall supervision", refresh: "Refresh", dismiss: "OK", tiles: "Today at a glance",
    "token.title": "Supervisor token needed", "token.label": "Token", "token.submit": "OK",
    "token.missing": "This page needs the hall supervisor's token. Enter it, or open the address with #token=….",
    "token.wrong": "This token has no supervisor rights ({detail}). Enter a supervisor's token.",
    "link.live": "● Live", "link.lost": "● Connection lost, reconnecting…",
    "tile.waiting": "Waiting now", "tile.windows": "Open windows", "tile.issued": "Issued today", "tile.served": "Served",
    "tile.no_show": "No-shows", "tile.wait": "Wait, median / longest", "tile.alerts": "Alerts",
    "min": "{n} min", "min.short": "{n} min",
    "services.title": "Waiting per service", "windows.title": "Windows", "alerts.title": "Open alerts",
    "export.title": "Statistics (CSV, opens in Excel)", "export.from": "From", "export.to": "to",
    "export.by": "Rows", "export.by_day": "one per day", "export.by_range": "the whole range",
    "export.download": "Download", "export.working": "Preparing…", "export.done": "Downloaded {name}",
    "export.failed": "Could not prepare the file: {detail}",
    "col.service": "Service", "col.waiting": "Waiting", "col.open": "Open windows", "col.est": "Est. wait", "col.note": "Note",
    "col.window": "Window", "col.state": "State", "col.current": "Current", "col.served": "Served",
    "col.no_show": "No-shows", "col.action": "Action",
    "note.long": "long wait", "note.very_long": "very long: open a temporary window?", "note.no_window": "no open window",
    "note.ok": "ok",
    "state.open": "open", "state.paused": "paused", "state.closed": "closed",
    "temporary": "temporary", "idle": "idle",
    "ticket.called": "called {m} ago", "ticket.serving": "serving for {m}",
    "action.open": "Open", "action.close": "Close",
    "confirm.open.title": "Open {name}?", "confirm.close.title": "Close {name}?",
    "confirm.open.text": "Once open, {name} calls tickets for: {services}.",
    "confirm.close.text": "Once closed, {name} calls no more tickets and its board goes dark; other windows serve those waiting.",
    "confirm.open.ok": "Open it", "confirm.close.ok": "Close it", "confirm.cancel": "Cancel",
    "done.open": "{name} is open", "done.close": "{name} is closed",
    "failed.open": "Could not open {name}: {detail}", "failed.close": "Could not close {name}: {detail}",
    "failed.open.short": "Could not open {name}: see Windows", "failed.close.short": "Could not close {name}: see Windows",
    "chart.title": "Today's waiting time, by hour", "chart.p50": "median", "chart.max": "longest",
    "chart.empty": "No data yet today", "chart.empty.more": "Once tickets are issued and called, the waits show here hour by hour.",
    "chart.axis": "min", "chart.hour": "{h}:00", "chart.now": "now",
    "chart.label": "Today's waiting time per hour: median and longest, in minutes",
    "chart.bar": "{h}:00 {what}: {n} min (issued {issued}, called {called})",
    "chart.summary": "{hours} hours with data; the longest wait was {max} min, at {h}:00.",
    "chart.summary.none": "{hours} hours with tickets; nobody has been called yet.",
    "alerts.none": "✓ No open alerts", "alert.raised": "since {time}, for {long}",
    "alert.kind.wait": "Long wait", "alert.kind.paused": "Long pause", "alert.kind.load": "Crowded",
    "alert.kind.serve": "Slow service", "alert.kind.bad_rating": "Poor rating",
    "alert.kind.paper_near_end": "Paper running low", "alert.kind.paper_out": "Paper out",
    "alert.kind.cover_open": "Printer cover open", "alert.kind.offline": "Device offline",
    "alert.kind.printer_offline": "Printer reports offline",
    "alert.where.device": "device {id}",
    "alert.state.open": "new", "alert.state.acknowledged": "acknowledged",
    "alert.acked": "acknowledged by {who} at {time}", "alert.ack": "Acknowledge", "alert.ack.label": "Acknowledge: {what}",
    "alert.suggest": "Suggested: open {name}", "alert.open_window": "Open {name}",
    "alert.acked.toast": "Acknowledged: {what}", "alert.ack.failed": "Could not acknowledge: {detail}",
    "alert.en.wait": "{service}: {count} waiting over {limit} min; the longest, {number}, for {minutes} min",
    "alert.en.paused": "{window}: paused over {limit} min ({minutes} min)",
    "alert.en.load": "{service}: {per} waiting per open window", "alert.en.load.none": "{service}: {count} waiting, no window open",
    "alert.en.serve": "{window}: {number} at the window for {minutes} min, over {limit} min",
    "alert.en.offline": "{device}: offline for over {limit} s",
    "long.min": "{n} min", "long.hour": "{h} h {m} min",
    "failed.read": "Could not read {what}: {detail}", "read.queue": "the queue", "read.stats": "today's statistics",
    "read.alerts": "the alerts",
  },
});

let bearer = token(ROLE);
let needToken = false;         // the daemon refused our token: the form shows, not the page
let hall = null;
let queue = null;              // GET /queue
let stats = null;              // GET /stats
let alerts = null;             // GET /alerts, then live; null until read
const namesEn = new Map();     // service id → name_en (GET /services)

// ---------------------------------------------------------------- small words

const word = (key, fallback) => { const text = t(key); return text === key ? fallback : text; };
const serviceName = (id, name) => (lang === "en" && namesEn.get(id)) || name || id;
const fmtMin = (n) => (n === null || n === undefined ? "—" : String(Math.round(n * 10) / 10));


function minutesSince(iso) {
  return iso ? Math.max(0, Math.floor((now() - Date.parse(iso)) / 60000)) : 0;
}

// ---------------------------------------------------------------- loading

async function guarded(call) {
  try {
    return await call();
  } catch (error) {
    if (error.status === 401 || error.status === 403) { askForToken(error); return undefined; }
    throw error;
  }
}

// A failed read says which figures it could not get.
const failedRead = (what) => (error) => {
  throw Object.assign(new Error(t("failed.read", { what: t(what), detail: error.detail || String(error) })),
                      { detail: t("failed.read", { what: t(what), detail: error.detail || String(error) }) });
};

async function loadQueue() {
  queue = await api("GET", "/queue").catch(failedRead("read.queue"));
  renderServices();
  renderWindows();
  renderTiles();
  renderAlerts();              // a suggested window to open: only while it is closed
}

async function loadStats() {
  const answer = await guarded(() => api("GET", "/stats", { token: bearer })).catch(failedRead("read.stats"));
  if (answer === undefined) return;
  stats = answer;
  renderWindows();
  renderTiles();
  renderChart();
}

// Statistics read the whole day: after a burst of events, once, and not more often
// than every few seconds.
const statsSoon = coalesce(() => loadStats().catch(problem),
                           { delayMs: COALESCE_MS, gapMs: STATS_EVERY_MS });

async function loadAlerts() {
  const answer = await guarded(() => api("GET", "/alerts", { token: bearer })).catch(failedRead("read.alerts"));
  if (answer === undefined) return;
  alerts = answer;
  renderAlerts();
  renderTiles();
}

async function loadNames() {
  try {
    for (const service of await api("GET", "/services")) if (service.name_en) namesEn.set(service.id, service.name_en);
  } catch { /* the Chinese names serve */ }
}

async function loadAll() {
  const results = await Promise.allSettled([loadQueue(), loadStats(), loadAlerts()]);
  const failed = results.filter((result) => result.status === "rejected")
    .map((result) => result.reason.detail || String(result.reason));
  if (failed.length) problem({ detail: failed.join(lang === "en" ? "; " : "；") });
  else $("#problem").hidden = true;
  if (!needToken) {
    $("#token-form").hidden = true;
    $("#main").hidden = false;
  }
}

function problem(error) {
  const box = $("#problem");
  box.textContent = error.detail || String(error);
  box.hidden = false;
}

const queueSoon = coalesce(() => loadQueue().catch(problem), { delayMs: COALESCE_MS });
const alertsSoon = coalesce(() => loadAlerts().catch(problem), { delayMs: COALESCE_MS });

function askForToken(error) {
  needToken = true;
  $("#main").hidden = true;
  askToken(error);
}

// ---------------------------------------------------------------- tiles

function renderTiles() {
  const set = (id, text) => { $(id).textContent = text; };
  if (queue) {
    const windows = queue.windows || [];
    set("#tile-waiting", String(queue.waiting ?? queue.services.reduce((n, s) => n + s.waiting, 0)));
    set("#tile-windows", `${windows.filter((w) => w.state === "open").length} / ${windows.length}`);
  }
  if (stats && stats.totals) {
    const totals = stats.totals;
    set("#tile-issued", String(totals.issued));
    set("#tile-served", String(totals.served));
    set("#tile-no-show", String(totals.no_show));
    const wait = totals.wait_min || {};
    set("#tile-wait", wait.p50 === null || wait.p50 === undefined ? "—"
      : `${fmtMin(wait.p50)} / ${t("min.short", { n: fmtMin(wait.max) })}`);
  }
  const tile = $("#tile-alerts");
  tile.textContent = alerts ? String(alerts.length) : "—";
  tile.classList.toggle("bad", Boolean(alerts && alerts.some((a) => (a.state || "open") === "open")));
}

// ---------------------------------------------------------------- services

// Windows open now that serve a service, counted from the windows themselves: the
// queue's own open_windows is the estimate's divisor and never says 0 (when none is
// open it counts the windows that usually serve the service).
function openNow(serviceId) {
  return ((queue && queue.windows) || [])
    .filter((w) => w.state === "open" && (w.services || []).includes(serviceId)).length;
}

function waitNote(service) {
  if (service.waiting > 0 && !openNow(service.id)) return { level: "bad", key: "note.no_window" };
  const est = service.est_wait_min ?? 0;
  if (est >= VERY_LONG_WAIT_MIN) return { level: "bad", key: "note.very_long" };
  if (est >= LONG_WAIT_MIN) return { level: "warn", key: "note.long" };
  return null;
}

function renderServices() {
  if (!queue) return;
  const rows = queue.services.map((service) => {
    const note = waitNote(service);
    return el("tr", { class: note ? `long ${note.level}` : "", dataset: { service: service.id } },
      el("th", { scope: "row", class: "service-name" }, serviceName(service.id, service.name)),
      el("td", { class: "num waiting" }, String(service.waiting)),
      el("td", { class: "num open" }, String(openNow(service.id))),
      el("td", { class: "num est" }, service.est_wait_min === null || service.est_wait_min === undefined
        ? "—" : t("min", { n: service.est_wait_min })),
      el("td", { class: "note" }, note ? el("span", { class: `flag ${note.level}` }, "⚠ " + t(note.key)) : ""));
  });
  $("#services").replaceChildren(...rows);
}

// ---------------------------------------------------------------- windows

function renderWindows() {
  if (!queue) return;
  const served = new Map(((stats && stats.windows) || []).map((w) => [w.id, w]));
  const rows = (queue.windows || []).map((window) => {
    const figures = served.get(window.id);
    const current = window.current;
    let currentText = el("span", { class: "idle" }, window.state === "open" ? t("idle") : "—");
    if (current) {
      const since = current.status === "serving" ? (current.started_at || current.called_at) : current.called_at;
      currentText = el("span", { class: `current ${current.status}` },
        el("strong", { class: "number" }, current.number), " ",
        t(current.status === "serving" ? "ticket.serving" : "ticket.called",
          { m: t("min", { n: minutesSince(since) }) }));
    }
    const actions = el("div", { class: "row-actions" });
    if (window.state !== "open") actions.append(actionButton(window, "open"));
    if (window.state !== "closed") actions.append(actionButton(window, "close"));
    return el("tr", { class: `window-row ${window.state}`, dataset: { window: window.id } },
      el("th", { scope: "row", class: "window-name" }, window.name,
         window.temporary ? el("span", { class: "tag" }, t("temporary")) : ""),
      el("td", {}, el("span", { class: `badge ${window.state}` }, word(`state.${window.state}`, window.state))),
      el("td", {}, currentText),
      el("td", { class: "num served" }, figures ? String(figures.served) : "—"),
      el("td", { class: "num no-show" }, figures ? String(figures.no_show) : "—"),
      el("td", {}, actions));
  });
  $("#windows").replaceChildren(...rows);
}

function actionButton(window, action) {
  return el("button", {
    type: "button", class: `button small ${action === "close" ? "secondary" : ""}`,
    dataset: { action, window: window.id },
    "aria-label": `${t(`action.${action}`)} ${window.name}`,
    onclick: () => confirmAction(window, action),
  }, t(`action.${action}`));
}

function serviceNames(ids) {
  const names = new Map((queue ? queue.services : []).map((s) => [s.id, serviceName(s.id, s.name)]));
  return ids.map((id) => names.get(id) || id).join(lang === "en" ? ", " : "、");
}

function confirmAction(window, action) {
  const dialog = $("#confirm");
  const vars = { name: window.name, services: serviceNames(window.services || []) };
  $("#confirm-title").textContent = t(`confirm.${action}.title`, vars);
  $("#confirm-text").textContent = t(`confirm.${action}.text`, vars);
  const ok = $("#confirm-ok");
  ok.textContent = t(`confirm.${action}.ok`);
  ok.className = action === "close" ? "button danger" : "button";
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") windowAction(window, action); };
  dialog.showModal();
  ok.focus();
}

async function windowAction(window, action) {
  const box = $("#window-problem");
  box.hidden = true;
  try {
    await api("POST", `/windows/${encodeURIComponent(window.id)}/${action}`, { token: bearer });
    toast(t(`done.${action}`, { name: window.name }));
    loadQueue().catch(problem);
  } catch (error) {
    if (error.status === 401 || error.status === 403) { askForToken(error); return; }
    $("#window-problem-text").textContent = t(`failed.${action}`, { name: window.name, detail: error.detail });
    box.hidden = false;
    toast(t(`failed.${action}.short`, { name: window.name }), "error", 5000);
  }
}

// ---------------------------------------------------------------- the chart

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// 0, 5, 10, 15, 20 … a ceiling and step a person reads at a glance.
function scale(max) {
  const steps = [0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120];
  const top = Math.max(max, 1);
  const step = steps.find((s) => top / s <= 5) || Math.ceil(top / 5 / 60) * 60;
  return { step, top: Math.ceil(top / step) * step };
}

function renderChart() {
  const box = $("#chart");
  const hours = (stats && stats.hours) || [];
  if (!hours.length) {
    box.replaceChildren(el("div", { class: "chart-empty" },
      el("p", { class: "chart-empty-title" }, t("chart.empty")),
      el("p", { class: "chart-empty-more" }, t("chart.empty.more"))));
    return;
  }
  const nowHour = inHall().hour;
  const first = Math.min(8, hours[0].hour, nowHour);
  const last = Math.max(17, hours[hours.length - 1].hour, nowHour);
  const byHour = new Map(hours.map((h) => [h.hour, h]));
  const peak = Math.max(0, ...hours.map((h) => h.wait_max_min ?? 0), ...hours.map((h) => h.wait_p50_min ?? 0));
  const { step, top } = scale(peak);

  // Drawn at the size it is shown, so its words are the page's size at any width.
  const W = Math.max(360, Math.round(box.clientWidth || 720)), H = 250;
  const left = 44, right = 10, topPad = 18, bottom = 34;
  const plotW = W - left - right, plotH = H - topPad - bottom;
  const slots = last - first + 1;
  const slotW = plotW / slots;
  const barW = Math.min(18, slotW * 0.34);
  const y = (minutes) => topPad + plotH - (minutes / top) * plotH;

  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-svg-title chart-svg-desc",
    class: "wait-chart", preserveAspectRatio: "xMidYMid meet",
  });
  chart.append(svg("title", { id: "chart-svg-title" }, t("chart.label")));
  const longest = hours.filter((h) => h.wait_max_min !== null && h.wait_max_min !== undefined)
    .sort((a, b) => b.wait_max_min - a.wait_max_min)[0];
  const summary = longest ? t("chart.summary", { hours: hours.length, max: fmtMin(longest.wait_max_min), h: longest.hour })
    : t("chart.summary.none", { hours: hours.length });
  chart.append(svg("desc", { id: "chart-svg-desc" }, summary));

  // the current hour, behind everything
  if (nowHour >= first && nowHour <= last) {
    const x = left + (nowHour - first) * slotW;
    chart.append(svg("rect", { x, y: topPad, width: slotW, height: plotH, class: "now-band" }),
                 svg("text", { x: x + slotW / 2, y: topPad - 4, class: "now-label", "text-anchor": "middle" }, t("chart.now")));
  }
  // the minutes axis and its grid
  for (let m = 0; m <= top; m += step) {
    chart.append(svg("line", { x1: left, x2: W - right, y1: y(m), y2: y(m), class: m === 0 ? "axis" : "grid" }),
                 svg("text", { x: left - 6, y: y(m) + 4, class: "tick", "text-anchor": "end" }, String(m)));
  }
  chart.append(svg("text", { x: 4, y: topPad - 4, class: "axis-title" }, t("chart.axis")));
  // the hours: two bars each, the median and the longest
  for (let hour = first; hour <= last; hour++) {
    const x = left + (hour - first) * slotW + slotW / 2;
    chart.append(svg("text", { x, y: H - bottom + 18, class: "tick", "text-anchor": "middle" },
                     t("chart.hour", { h: hour })));
    const data = byHour.get(hour);
    if (!data) continue;
    const bars = [["p50", data.wait_p50_min, x - barW - 1], ["max", data.wait_max_min, x + 1]];
    for (const [what, minutes, bx] of bars) {
      if (minutes === null || minutes === undefined) continue;
      const h = Math.max(2, (minutes / top) * plotH);      // a wait of 0 still shows as a sliver
      const bar = svg("rect", { x: bx, y: topPad + plotH - h, width: barW, height: h, class: `bar ${what}`,
                                "data-hour": hour, "data-minutes": minutes });
      bar.append(svg("title", {}, t("chart.bar", { h: hour, what: t(`chart.${what}`), n: fmtMin(minutes),
                                                    issued: data.issued, called: data.called })));
      chart.append(bar);
    }
  }
  box.replaceChildren(chart, el("p", { class: "chart-summary" }, summary));
}

// ---------------------------------------------------------------- alerts

function howLong(iso) {
  const minutes = Math.max(0, Math.floor((now() - Date.parse(iso)) / 60000));
  return minutes < 60 ? t("long.min", { n: minutes })
    : t("long.hour", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

const windowOf = (id) => ((queue && queue.windows) || []).find((w) => w.id === id) || null;
const windowName = (id) => (windowOf(id) || {}).name || id;
const serviceTitle = (id) => {
  const service = ((queue && queue.services) || []).find((s) => s.id === id);
  return serviceName(id, service ? service.name : id);
};

// The daemon writes its alerts in Chinese; in English the page says the same from
// the alert's figures, where it knows the kind.
function alertText(alert) {
  const d = alert.detail || {};
  if (lang !== "en") return alert.message || "";
  switch (alert.kind) {
    case "wait":
      return t("alert.en.wait", { service: serviceTitle(alert.service), count: d.count, limit: d.wait_min,
                                  number: d.longest, minutes: d.longest_min });
    case "paused":
      return t("alert.en.paused", { window: windowName(alert.window), limit: d.pause_min, minutes: d.minutes });
    case "load":
      return d.open_windows ? t("alert.en.load", { service: serviceTitle(alert.service), per: d.per_window })
        : t("alert.en.load.none", { service: serviceTitle(alert.service), count: d.waiting });
    case "serve":
      return t("alert.en.serve", { window: windowName(alert.window), number: d.number, minutes: d.minutes,
                                   limit: d.serve_min });
    case "offline":
      return t("alert.en.offline", { device: alert.device, limit: d.device_offline_s })
        + (d.problem ? ` (${d.problem})` : "");
    default:
      return alert.device && d.reported ? `${alert.device}: ${d.reported}` : alert.message || "";
  }
}

function renderAlerts() {
  const list = $("#alerts");
  if (alerts === null) { list.replaceChildren(el("li", { class: "alert-none unknown" }, "—")); return; }
  if (!alerts.length) {
    list.replaceChildren(el("li", { class: "alert-none" }, t("alerts.none")));
    return;
  }
  list.replaceChildren(...alerts.map(alertItem));
}

function alertItem(alert) {
  const state = alert.state || "open";
  const kind = word(`alert.kind.${alert.kind}`, alert.kind);
  const where = [alert.device ? t("alert.where.device", { id: alert.device }) : null,
                 alert.window ? windowName(alert.window) : null,
                 alert.service ? serviceTitle(alert.service) : null].filter(Boolean);
  const text = alertText(alert);
  const actions = el("div", { class: "alert-actions" });
  const suggested = alert.kind === "load" && alert.detail ? windowOf(alert.detail.suggest_window) : null;
  if (suggested && suggested.state === "closed") {
    actions.append(el("button", {
      type: "button", class: "button small", dataset: { action: "open", window: suggested.id },
      onclick: () => confirmAction(suggested, "open"),
    }, t("alert.open_window", { name: suggested.name })));
  }
  if (state === "open") {
    actions.append(el("button", {
      type: "button", class: "button small secondary ack", "aria-label": t("alert.ack.label", { what: kind }),
      onclick: (event) => acknowledgeAlert(alert, event.currentTarget),
    }, t("alert.ack")));
  }
  return el("li", { class: `alert-item ${state}`, dataset: { kind: alert.kind, id: alert.id, state,
                                                            device: alert.device || "" } },
    el("p", { class: "alert-kind" }, "⚠ " + kind,
       where.length ? el("span", { class: "alert-where" }, where.join(" · ")) : "",
       el("span", { class: `alert-state ${state}` }, word(`alert.state.${state}`, state))),
    el("p", { class: "alert-message" }, text),
    suggested ? el("p", { class: "alert-suggest" }, "➜ " + t("alert.suggest", {
      name: suggested.name + (suggested.temporary ? (lang === "en" ? " (temporary)" : "（临时）") : "") })) : "",
    alert.raised_at ? el("p", { class: "alert-time" },
      t("alert.raised", { time: alert.raised_at.slice(11, 16), long: howLong(alert.raised_at) })) : "",
    alert.acked_by ? el("p", { class: "alert-acked" },
      "✓ " + t("alert.acked", { who: alert.acked_by, time: (alert.acked_at || "").slice(11, 16) })) : "",
    actions.children.length ? actions : "");
}

async function acknowledgeAlert(alert, button) {
  button.disabled = true;
  const what = word(`alert.kind.${alert.kind}`, alert.kind);
  try {
    const answer = await api("POST", `/alerts/${encodeURIComponent(alert.id)}/acknowledge`, { token: bearer });
    alerts = (alerts || []).map((a) => (a.id === answer.id ? answer : a)).filter((a) => a.state !== "closed");
    renderAlerts();
    renderTiles();
    toast(t("alert.acked.toast", { what }));
  } catch (error) {
    button.disabled = false;
    if (error.status === 401 || error.status === 403) { askForToken(error); return; }
    toast(t("alert.ack.failed", { detail: error.detail || String(error) }), "error", 5000);
    alertsSoon();
  }
}

// An `alert` event shows at once; GET /alerts then says what is open.
function alertEvent(event) {
  const d = event.data || {};
  alerts = alerts || [];
  if (d.state === "closed") {
    alerts = alerts.filter((a) => a.id !== d.alert);
  } else if (d.state === "acknowledged") {
    alerts = alerts.map((a) => (a.id === d.alert
      ? { ...a, state: "acknowledged", acked_by: d.acked_by, acked_at: event.at } : a));
  } else if (!alerts.some((a) => a.id === d.alert)) {
    alerts = [{ id: d.alert, kind: d.kind, state: "open", key: d.key, device: d.device ?? null,
                window: d.window ?? null, service: d.service ?? null, ticket: d.ticket ?? null,
                message: d.message || "", detail: d.detail || {}, raised_at: event.at }, ...alerts];
  }
  renderAlerts();
  renderTiles();
  alertsSoon();
}

// ---------------------------------------------------------------- the CSV export

// The file comes through the API with the token (a plain link could not carry it),
// then is handed to the browser as a download.
async function exportCsv(event) {
  event.preventDefault();
  const from = $("#export-from").value;
  const to = $("#export-to").value;
  const by = $("#export-by").value;
  const status = $("#export-status");
  const button = $("#export-button");
  const name = `kioskd-stats-${from}_${to}.csv`;
  button.disabled = true;
  status.textContent = t("export.working");
  try {
    const query = new URLSearchParams({ from, to, by });
    const url = await guarded(() => blobUrl(`/stats.csv?${query}`, { token: bearer, timeoutMs: 60000 }));
    if (url === undefined) { status.textContent = ""; return; }
    const link = el("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = t("export.done", { name });
  } catch (error) {
    status.textContent = t("export.failed", { detail: error.detail || String(error) });
  } finally {
    button.disabled = false;
  }
}

// This month so far, in the hall's time.
function exportDefaults() {
  const today = inHall(now()).date;
  if (!$("#export-to").value) $("#export-to").value = today;
  if (!$("#export-from").value) $("#export-from").value = `${today.slice(0, 8)}01`;
}

// ---------------------------------------------------------------- language

function renderLanguage() {
  translate();
  document.title = `${t("title")} · kioskd`;
  renderServices();
  renderWindows();
  renderChart();
  renderAlerts();
  renderTiles();
  explainToken();
}

// ---------------------------------------------------------------- start

function start() {
  renderLanguage();
  langButton($("#lang"), renderLanguage);
  $("#refresh").addEventListener("click", () => loadAll());
  $("#window-problem-dismiss").addEventListener("click", () => { $("#window-problem").hidden = true; });
  $("#export-form").addEventListener("submit", exportCsv);
  exportDefaults();
  onTokenSubmit(ROLE, (given) => { bearer = given; needToken = false; loadAll(); });

  syncClock().then((answer) => {
    hall = answer;
    $("#export-to").value = "";        // the hall's own date, now that its clock is known
    $("#export-from").value = "";
    exportDefaults();
    $("#hall-name").textContent = hall.name || "";
    $("#hall-day").textContent = hall.day || "";
    renderChart();
  }).catch(() => {});
  loadNames().then(() => { renderServices(); renderWindows(); });
  loadAll();

  const linkState = $("#link-state");
  follow({
    onLive: () => {
      linkState.textContent = t("link.live");
      linkState.dataset.t = "link.live";
      linkState.className = "link-state";
      queueSoon();                     // what happened before the stream opened, or
      statsSoon();                     // while it was broken: read everything again
      alertsSoon();
    },
    onLost: () => {
      linkState.textContent = t("link.lost");
      linkState.dataset.t = "link.lost";
      linkState.className = "link-state lost";
    },
    onEvent: (event) => {
      if (event.type === "alert") { alertEvent(event); return; }
      if (event.type.startsWith("ticket.") || event.type === "window.changed") {
        queueSoon();
        statsSoon();
      }
    },
  });

  setInterval(() => { if (!document.hidden && !needToken) loadAll(); }, POLL_MS);
  let width = 0;
  new ResizeObserver(([entry]) => {
    const now = Math.round(entry.contentRect.width);
    if (Math.abs(now - width) > 4) { width = now; renderChart(); }
  }).observe($("#chart"));
}

start();
