// window.js — the clerk's console: one window's current ticket, what waits for it,
// and the buttons (each with a key) a clerk presses all day: call, recall, start,
// complete, no-show, transfer, pause/resume. Opened as /ui/window?window=3#token=…

import {
  $, inHall, api, ApiError, coalesce, el, elapsed, follow, lang, langButton, minutesSince, params,
  setToken, syncClock, t, toast, token, translate, words,
} from "./kioskd.js";

words({
  zh: {
    title: "窗口呼叫", pick: "请选择窗口", "pick.unknown": "没有窗口“{w}”，请从下面选择。",
    "login.title": "需要窗口令牌", "login.label": "令牌（由管理员发放）", "login.submit": "确定",
    "login.need": "请输入本窗口的令牌。", "login.wrong": "这个令牌不能操作本窗口：{detail}",
    "login.unknown": "令牌无效：{detail}",
    current: "当前票号", actions: "操作", priority: "优先",
    "since.issued": "取号至今", "since.called": "呼叫至今", "since.started": "办理用时",
    recalls: "重呼次数",
    "act.call": "叫号", "act.recall": "重呼", "act.start": "开始办理", "act.complete": "办结",
    "act.noshow": "未到", "act.transfer": "转移", "act.pause": "暂停", "act.resume": "恢复",
    "key.call": "空格 / N",
    keys: "快捷键：空格、N 或 F1 叫号 · R 重呼 · S 开始办理 · C 办结 · X 未到 · T 转移 · P 暂停/恢复；在输入框中不起作用。",
    waiting: "本窗口等候", people: "人", "waiting.none": "暂无等候",
    "waiting.more": "另有 {n} 人未列出", "waited": "已等 {m} 分钟", transferred: "转来",
    "status.called": "已呼叫，等候到窗", "status.serving": "办理中", "status.idle": "空闲，可叫号", "status.paused": "暂停中，恢复后才能叫号", "status.closed": "窗口已关闭",
    "state.open": "开放", "state.paused": "暂停", "state.closed": "关闭",
    serves: "办理：{list}",
    "ok.call": "已呼叫 {number}", "ok.none": "当前无人等候", "ok.recall": "已重呼 {number}（第 {n} 次）",
    "ok.start": "开始办理 {number}", "ok.complete": "已办结 {number}", "ok.noshow": "{number} 已记为未到",
    "ok.transfer": "{number} 已转到 {target}", "ok.pause": "窗口已暂停", "ok.resume": "窗口已恢复，可以叫号",
    "no.call": "未能叫号", "no.recall": "未能重呼", "no.start": "未能开始办理", "no.complete": "未能办结",
    "no.noshow": "未能记为未到", "no.transfer": "未能转移", "no.pause": "未能暂停", "no.resume": "未能恢复",
    "why.nocurrent": "当前没有票号，请先叫号", "why.serving": "{number} 正在办理中，只能办结或转移",
    "why.closed": "本窗口已关闭，需由管理员开放",
    "why.unreachable": "连接不上服务器，请稍后再试", "why.timeout": "服务器没有及时回答，请再按一次",
    "plain.paused": "本窗口已暂停，请先恢复（P）再叫号", "plain.closed": "本窗口已关闭，需由管理员开放",
    "plain.nocurrent": "当前没有票号，请先叫号", "plain.serving": "{number} 已在办理中",
    "plain.served": "{number} 正在办理，请办结或转移",
    "link.lost": "连接中断，正在重连…", "link.live": "",
    "transfer.title": "转移", "transfer.filter": "筛选", "transfer.services": "转到事项（重新排队，保留原取号时间）",
    "transfer.windows": "转到窗口（仅该窗口可叫）", "transfer.keys": "↑↓ 选择 · Enter 确认 · Esc 取消",
    "transfer.none": "没有符合的选项", cancel: "取消", confirm: "确认转移",
    "choice.waiting": "等候 {n} 人", "choice.serves": "{state} · {list}",
  },
  en: {
    title: "Clerk's console", pick: "Choose a window", "pick.unknown": "There is no window “{w}”; choose one below.",
    "login.title": "A window token is needed", "login.label": "Token (from the hall's administrator)",
    "login.submit": "OK", "login.need": "Enter this window's token.",
    "login.wrong": "This token cannot act for this window: {detail}", "login.unknown": "Token refused: {detail}",
    current: "Current ticket", actions: "Actions", priority: "Priority",
    "since.issued": "Since issued", "since.called": "Since called", "since.started": "Serving for",
    recalls: "Recalls",
    "act.call": "Call next", "act.recall": "Recall", "act.start": "Start", "act.complete": "Complete",
    "act.noshow": "No-show", "act.transfer": "Transfer", "act.pause": "Pause", "act.resume": "Resume",
    "key.call": "Space / N",
    keys: "Keys: Space, N or F1 call next · R recall · S start · C complete · X no-show · T transfer · P pause/resume; not while typing in a field.",
    waiting: "Waiting for this window", people: "", "waiting.none": "Nobody waiting",
    "waiting.more": "{n} more not listed", waited: "waited {m} min", transferred: "sent here",
    "status.called": "Called, not yet at the window", "status.serving": "Being served", "status.idle": "Free: call the next", "status.paused": "Paused: resume to call", "status.closed": "Window closed",
    "state.open": "Open", "state.paused": "Paused", "state.closed": "Closed",
    serves: "Serves: {list}",
    "ok.call": "Called {number}", "ok.none": "Nobody is waiting", "ok.recall": "Recalled {number} (time {n})",
    "ok.start": "Serving {number}", "ok.complete": "{number} completed", "ok.noshow": "{number} marked no-show",
    "ok.transfer": "{number} sent to {target}", "ok.pause": "Window paused", "ok.resume": "Window open again",
    "no.call": "Not called", "no.recall": "Not recalled", "no.start": "Not started", "no.complete": "Not completed",
    "no.noshow": "Not marked", "no.transfer": "Not transferred", "no.pause": "Not paused", "no.resume": "Not resumed",
    "why.nocurrent": "No current ticket: call the next one first",
    "why.serving": "{number} is being served: complete or transfer it", "why.closed": "This window is closed; a supervisor opens it",
    "why.unreachable": "The server cannot be reached; try again shortly", "why.timeout": "The server did not answer in time; press again",
    "plain.paused": "This window is paused: resume (P) before calling", "plain.closed": "This window is closed; a supervisor opens it",
    "plain.nocurrent": "No current ticket: call the next one first", "plain.serving": "{number} is already being served",
    "plain.served": "{number} is being served: complete or transfer it",
    "link.lost": "Connection lost, reconnecting…", "link.live": "",
    "transfer.title": "Transfer", "transfer.filter": "Filter", "transfer.services": "To a service (queues again, keeps its issue time)",
    "transfer.windows": "To a window (only that window calls it)", "transfer.keys": "↑↓ choose · Enter confirm · Esc cancel",
    "transfer.none": "Nothing matches", cancel: "Cancel", confirm: "Transfer",
    "choice.waiting": "{n} waiting", "choice.serves": "{state} · {list}",
  },
});

const windowId = params.get("window");
const role = windowId ? `window.${windowId}` : null;
let bearer = role ? token(role) : "";

const state = {
  window: null,            // GET /windows/{w}
  waiting: null,           // GET /windows/{w}/waiting
  services: [],            // GET /services
  windows: [],             // GET /windows
  last: null,              // the last confirmation {text, kind}
  busy: false,             // a press is in flight
  generation: 0,           // bumped by every press: a refresh begun before it is stale
};

// ---------------------------------------------------------------- words that change

function serviceName(id) {
  const s = state.services.find((x) => x.id === id);
  if (!s) return id;
  return lang === "en" && s.name_en ? s.name_en : s.name;
}

function windowName(id) {
  const w = state.windows.find((x) => x.id === id);
  return w ? w.name : id;
}

// The daemon explains a refusal in an English sentence; the clerk reads it in Chinese
// first, with the daemon's own words kept beside it.
function plain(detail) {
  const rules = [
    [/^window \S+ is paused; it calls only when open/, () => t("plain.paused")],
    [/^window \S+ is closed/, () => t("plain.closed")],
    [/^window \S+ has no current ticket/, () => t("plain.nocurrent")],
    [/^(\S+) is already being served/, (m) => t("plain.serving", { number: m[1] })],
    [/^(\S+) is being served; complete or transfer/, (m) => t("plain.served", { number: m[1] })],
  ];
  for (const [pattern, say] of rules) {
    const m = detail.match(pattern);
    if (m) return lang === "en" ? say(m) : `${say(m)}（${detail}）`;
  }
  return detail;
}

// ---------------------------------------------------------------- the token form

function showOnly(id) {
  // Leaving the token form: its field must not keep the focus (and swallow the keys).
  if (document.activeElement instanceof HTMLElement && document.activeElement.closest(`main:not(#${id})`)) {
    document.activeElement.blur();
  }
  for (const name of ["picker", "login", "console"]) $(`#${name}`).hidden = name !== id;
}

function askToken(error) {
  showOnly("login");
  const why = !error || !bearer ? t("login.need")
    : error.status === 403 ? t("login.wrong", { detail: error.detail })
      : t("login.unknown", { detail: error.detail });
  $("#login-why").textContent = why;
  $("#login-why").className = `login-why${error && bearer ? " bad" : ""}`;
  $("#login-token").value = "";
  $("#login-token").focus();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  bearer = $("#login-token").value.trim();
  setToken(role, bearer);
  await begin();
});

// May this token act here? The daemon answers 200, or 401/403 with its reason.
async function allowed() {
  try {
    await api("GET", `/windows/${encodeURIComponent(windowId)}/access`, { token: bearer });
  } catch (error) {
    if (error.status === 401 || error.status === 403) { askToken(error); return false; }
    // a hall of several daemons: this window's console belongs on its own floor's
    if (error.status === 409 && (error.body || {}).reason === "other_instance") {
      await pick(null, error.detail);
      return false;
    }
    if (error.status === 0) throw error;
  }
  return true;
}

// ---------------------------------------------------------------- the window picker

async function pick(unknown, elsewhere) {
  showOnly("picker");
  $("#title").textContent = t("title");
  const list = $("#windows");
  try {
    [state.windows, state.services] = await Promise.all([api("GET", "/windows"), api("GET", "/services")]);
  } catch (error) {
    list.replaceChildren(el("li", { class: "bad" }, error.detail));
    return;
  }
  const items = state.windows.map((w) => el("li", {},
    el("a", { class: "window-choice", href: `/ui/window?window=${encodeURIComponent(w.id)}` },
      el("span", { class: "window-choice-name" }, w.name),
      el("span", { class: `badge ${w.state}` }, t(`state.${w.state}`)),
      el("span", { class: "window-choice-serves" }, w.services.map(serviceName).join("、")))));
  if (unknown) items.unshift(el("li", { class: "bad" }, t("pick.unknown", { w: unknown })));
  if (elsewhere) items.unshift(el("li", { class: "bad", id: "elsewhere" }, elsewhere));
  list.replaceChildren(...items);
}

// ---------------------------------------------------------------- reading the window

// a burst of events: at most four refetches a second
const scheduleRefresh = coalesce(() => refresh(), { gapMs: 250 });

async function refresh() {
  // What a refresh reads while a press is in flight may predate the press (the daemon
  // can answer the GET first): only a refresh begun after the last answer is drawn.
  const generation = state.generation;
  const during = state.busy;
  const w = encodeURIComponent(windowId);
  let win, waiting;
  try {
    [win, waiting] = await Promise.all([
      api("GET", `/windows/${w}`), api("GET", `/windows/${w}/waiting?limit=20`)]);
  } catch {
    return;          // unreachable: the stream's mark says so, and it refetches when back
  }
  if (during || state.busy || generation !== state.generation) { scheduleRefresh(); return; }
  state.window = win;
  state.waiting = waiting;
  render();
}

// ---------------------------------------------------------------- drawing

const STATUS_KEY = { called: "status.called", serving: "status.serving" };

function render() {
  const win = state.window;
  if (!win) return;
  document.title = `${win.name} · ${t("title")}`;
  $("#title").textContent = win.name;
  const badge = $("#state");
  badge.hidden = false;
  badge.className = `badge ${win.state}`;
  badge.textContent = t(`state.${win.state}`);
  $("#serves").textContent = t("serves", { list: win.services.map(serviceName).join("、") });
  document.body.classList.toggle("paused", win.state !== "open");

  const cur = win.current;
  $("#number").textContent = cur ? cur.number : "—";
  $("#number").classList.toggle("empty", !cur);
  $("#service").textContent = cur ? (cur.service_name && lang !== "en" ? cur.service_name : serviceName(cur.service)) : "";
  $("#priority").hidden = !(cur && cur.priority);
  $("#status").textContent = cur ? t(STATUS_KEY[cur.status] || cur.status)
    : t(win.state === "open" ? "status.idle" : `status.${win.state}`);
  $("#status").className = `status ${cur ? cur.status : "idle"}`;
  $("#recalls").textContent = cur ? String(cur.recalls) : "—";
  tick();

  const last = $("#last");
  last.textContent = state.last ? state.last.text : "";
  last.className = `last ${state.last ? state.last.kind : ""}`;

  renderWaiting();
  renderButtons();
}

function renderWaiting() {
  const waiting = state.waiting;
  if (!waiting) return;
  $("#waiting-count").textContent = String(waiting.count);
  const list = $("#waiting-list");
  if (!waiting.tickets.length) {
    list.replaceChildren(el("li", { class: "none" }, t("waiting.none")));
  } else {
    list.replaceChildren(...waiting.tickets.map((ticket) => el("li", { class: ticket.priority ? "priority" : "" },
      el("span", { class: "w-number" }, ticket.number),
      el("span", { class: "w-service" }, lang === "en" ? serviceName(ticket.service) : (ticket.service_name || serviceName(ticket.service))),
      ticket.priority ? el("span", { class: "badge priority" }, t("priority")) : null,
      ticket.target_window ? el("span", { class: "badge transferred" }, t("transferred")) : null,
      el("span", { class: "w-waited", dataset: { since: ticket.issued_at || "" } },
        t("waited", { m: minutesSince(ticket.issued_at) ?? "—" })))));
  }
  const more = waiting.count - waiting.tickets.length;
  $("#waiting-more").textContent = more > 0 ? t("waiting.more", { n: more }) : "";
}

const BUTTONS = ["call", "recall", "start", "complete", "noshow", "transfer", "pause"];

// Why an action cannot be pressed now (null: it can). Call-next is always pressable:
// at a paused window the daemon's refusal says why.
function blocked(action) {
  const win = state.window;
  if (!win) return "";
  const cur = win.current;
  switch (action) {
    case "call": return null;
    case "pause": return win.state === "closed" ? t("why.closed") : null;
    case "complete": case "transfer": return cur ? null : t("why.nocurrent");
    default:
      if (!cur) return t("why.nocurrent");
      return cur.status === "called" ? null : t("why.serving", { number: cur.number });
  }
}

function renderButtons() {
  for (const action of BUTTONS) {
    const button = $(`[data-action="${action}"]`);
    button.disabled = state.busy || blocked(action) !== null;
  }
  const paused = state.window && state.window.state === "paused";
  const label = $("#pause-label");
  label.dataset.t = paused ? "act.resume" : "act.pause";
  label.textContent = t(label.dataset.t);
  $("#do-pause").classList.toggle("resume", paused);
  $("#console").setAttribute("aria-busy", state.busy ? "true" : "false");
}

// Every second: the current ticket's clocks, the waited minutes, the hall clock.
function tick() {
  const cur = state.window && state.window.current;
  $("#since-issued").textContent = cur && cur.issued_at ? elapsed(cur.issued_at) : "—";
  $("#since-called").textContent = cur && cur.called_at ? elapsed(cur.called_at) : "—";
  $("#since-started").textContent = cur && cur.started_at ? elapsed(cur.started_at) : "—";
  for (const node of document.querySelectorAll(".w-waited")) {
    const m = minutesSince(node.dataset.since);
    node.textContent = t("waited", { m: m ?? "—" });
  }
  $("#clock").textContent = inHall().seconds;
}

// ---------------------------------------------------------------- pressing

const ROUTES = { call: "call-next", recall: "recall", start: "start", complete: "complete", noshow: "no-show" };

function confirmWith(text, kind) {
  state.last = { text, kind };
  toast(text, kind, kind === "ok" ? 3000 : 6000);
  const last = $("#last");
  last.textContent = text;
  last.className = `last ${kind}`;
}

async function press(action) {
  if (state.busy || !state.window) return;
  const why = blocked(action);
  if (why) { confirmWith(why, "warn"); return; }
  if (action === "transfer") { openTransfer(); return; }
  let route = ROUTES[action];
  let kind = action;
  if (action === "pause") {
    kind = state.window.state === "paused" ? "resume" : "pause";
    route = kind;
  }
  await send(kind, route);
}

async function send(kind, route, body) {
  state.busy = true;
  state.generation += 1;
  renderButtons();
  const w = encodeURIComponent(windowId);
  try {
    const answer = await api("POST", `/windows/${w}/${route}`, { body, token: bearer });
    applyAnswer(kind, answer, body);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401 || error.status === 403) {
      state.busy = false;
      askToken(error);
      return;
    }
    const why = error.status === 0 ? t(`why.${error.detail}`) : plain(error.detail);
    confirmWith(`${t(`no.${kind}`)}：${why}`, "error");
  } finally {
    state.busy = false;
    render();
    scheduleRefresh();
  }
}

// The answer is the truth of the moment: show it at once, then refetch the rest.
function applyAnswer(kind, answer, body) {
  const win = state.window;
  if (kind === "pause" || kind === "resume") {
    state.window = answer;
    confirmWith(t(`ok.${kind}`), "ok");
    return;
  }
  if (kind === "call" && answer === null) {
    win.current = null;                     // call-next finished the current one first
    confirmWith(t("ok.none"), "warn");
    return;
  }
  const number = answer.number;
  const ended = ["done", "no_show", "waiting", "cancelled"].includes(answer.status);
  win.current = ended ? null : { ...(win.current || {}), ...answer };
  if (kind === "transfer") {
    const target = body.window ? windowName(body.window) : serviceName(body.service);
    confirmWith(t("ok.transfer", { number, target }), "ok");
  } else {
    confirmWith(t(`ok.${kind}`, { number, n: answer.recalls }), "ok");
  }
}

for (const action of BUTTONS) {
  $(`[data-action="${action}"]`).addEventListener("click", () => press(action));
}

// Keys: event.code, so a Chinese input method or caps lock changes nothing.
const KEYS = {
  Space: "call", KeyN: "call", F1: "call", KeyR: "recall", KeyS: "start", KeyC: "complete",
  KeyX: "noshow", KeyT: "transfer", KeyP: "pause",
};

// A field of a closed dialog is no typing: Chromium may leave the focus in the
// transfer chooser's filter after Escape closes it, until its next focus fix-up, and
// the clerk's next key must act.
function typing(target) {
  return target instanceof HTMLElement && !target.closest("dialog:not([open])") &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if ($("#transfer").open || $("#console").hidden || typing(event.target)) return;
  if (event.repeat && (event.code === "Enter" || event.code === "NumpadEnter")) {
    event.preventDefault();                 // a held Enter on a focused button: once
    return;
  }
  if (event.ctrlKey || event.altKey || event.metaKey || event.isComposing) return;
  const action = KEYS[event.code];
  if (!action) return;
  event.preventDefault();                   // no page scroll, no browser help, no button click
  if (event.repeat) return;                 // a held key acts once
  press(action);
});

document.addEventListener("keyup", (event) => {
  // A focused button is "clicked" by Space on key-up: the key-down was ours already.
  if (event.code === "Space" && !typing(event.target) && !$("#transfer").open) event.preventDefault();
});

// ---------------------------------------------------------------- transfer chooser

const dialog = $("#transfer");

function option(value, name, info, search) {
  return el("label", { class: "choice", dataset: { search: search.toLowerCase() } },
    el("input", { type: "radio", name: "target", value }),
    el("span", { class: "choice-name" }, name),
    el("span", { class: "choice-info" }, info));
}

function openTransfer() {
  const cur = state.window.current;
  $("#transfer-number").textContent = cur.number;
  $("#transfer-services").replaceChildren(...state.services
    .filter((s) => s.id !== cur.service)
    .map((s) => option(`service:${s.id}`, serviceName(s.id),
      `${s.prefix} · ${t("choice.waiting", { n: s.waiting })}`,
      `${s.id} ${s.name} ${s.name_en || ""} ${s.prefix}`)));
  $("#transfer-windows").replaceChildren(...state.windows
    .filter((w) => w.id !== windowId)
    .map((w) => option(`window:${w.id}`, w.name,
      t("choice.serves", { state: t(`state.${w.state}`), list: w.services.map(serviceName).join("、") }),
      `${w.id} ${w.name}`)));
  $("#transfer-filter").value = "";
  filterChoices();
  dialog.showModal();
  $("#transfer-filter").focus();
  // The lists may be a little old: refresh counts and states for next time.
  api("GET", "/services").then((s) => { state.services = s; }).catch(() => {});
  api("GET", "/windows").then((w) => { state.windows = w; }).catch(() => {});
}

function visibleChoices() {
  return [...dialog.querySelectorAll(".choice")].filter((node) => !node.hidden);
}

function filterChoices() {
  const words = $("#transfer-filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  for (const node of dialog.querySelectorAll(".choice")) {
    node.hidden = !words.every((word) => node.dataset.search.includes(word));
  }
  const visible = visibleChoices();
  const checked = dialog.querySelector("input[name=target]:checked");
  if (!checked || checked.closest(".choice").hidden) {
    if (checked) checked.checked = false;
    if (visible.length) visible[0].querySelector("input").checked = true;
  }
  $("#transfer-ok").disabled = visible.length === 0;
  markChosen();
}

function markChosen() {
  for (const node of dialog.querySelectorAll(".choice")) {
    node.classList.toggle("chosen", node.querySelector("input").checked);
  }
}

function moveChoice(step) {
  const visible = visibleChoices();
  if (!visible.length) return;
  const at = visible.findIndex((node) => node.querySelector("input").checked);
  const next = visible[(at + step + visible.length) % visible.length];
  next.querySelector("input").checked = true;
  next.scrollIntoView({ block: "nearest" });
  markChosen();
}

async function confirmTransfer() {
  const checked = dialog.querySelector("input[name=target]:checked");
  if (!checked || checked.closest(".choice").hidden) return;
  const [kind, id] = checked.value.split(/:(.*)/s);
  dialog.close();
  await send("transfer", "transfer", kind === "service" ? { service: id } : { window: id });
}

$("#transfer-filter").addEventListener("input", filterChoices);
dialog.addEventListener("change", markChosen);
dialog.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    moveChoice(event.key === "ArrowDown" ? 1 : -1);
  } else if (event.key === "Enter" && !event.isComposing) {
    event.preventDefault();
    if (event.repeat) return;
    if (event.target.id === "transfer-cancel") dialog.close();
    else confirmTransfer();
  }
});
$("#transfer-form").addEventListener("submit", (event) => { event.preventDefault(); confirmTransfer(); });
$("#transfer-cancel").addEventListener("click", () => dialog.close());

// ---------------------------------------------------------------- language, start

langButton($("#lang"), () => {
  if (!$("#console").hidden) render();
  else if (!$("#picker").hidden) pick();
  else if (!$("#login").hidden) $("#login-why").textContent ||= t("login.need");
});

let stream = null;

function setLink(live) {
  const mark = $("#link");
  mark.textContent = live ? "" : t("link.lost");
  mark.className = `link-state${live ? "" : " lost"}`;
}

async function begin() {
  let win;
  try {
    win = await api("GET", `/windows/${encodeURIComponent(windowId)}`);
  } catch (error) {
    if (error.status === 404) { await pick(windowId); return; }
    setLink(false);
    setTimeout(begin, 3000);
    return;
  }
  state.window = win;
  $("#title").textContent = win.name;
  try {
    [state.services, state.windows] = await Promise.all([api("GET", "/services"), api("GET", "/windows")]);
  } catch { /* names fall back to ids; the transfer chooser fills when it opens */ }
  if (!(await allowed().catch(() => true))) return;
  showOnly("console");
  render();
  await refresh();
  if (!stream) {
    stream = follow({
      onEvent: (event) => {
        if (event.type.startsWith("ticket.") || event.type === "window.changed") scheduleRefresh();
      },
      onLive: () => { setLink(true); scheduleRefresh(); },
      onLost: () => setLink(false),
    });
  }
}

translate();
syncClock().catch(() => {});             // the hall's clock and time zone
setInterval(() => { if (!$("#console").hidden) tick(); }, 1000);
setInterval(() => syncClock().catch(() => {}), 10 * 60 * 1000);
if (windowId) begin(); else pick();

window.kioskdWindow = { state, get stream() { return stream; } };
