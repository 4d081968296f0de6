// diagnostics.js — the technician's page: every device with its state and what its
// driver knows, self-tests and reconnects, the printer's last ticket, what each board
// shows, the voice's last announcement, and a live log of device events.

import {
  $, inHall, api, askToken, blobUrl, coalesce, el, explainToken, follow, lang, langButton, now, onTokenSubmit,
  syncClock, t, token, translate, words,
} from "./kioskd.js";

const ROLE = "technician";
const LOG_LINES = 200;          // the log keeps the newest this many lines
const POLL_MS = 5000;           // boards and the voice change without an event of their own
const COALESCE_MS = 250;

words({
  zh: {
    title: "设备诊断", refresh: "刷新", devices: "设备",
    "token.title": "需要技术人员令牌", "token.label": "令牌", "token.submit": "确定",
    "token.missing": "这个页面需要技术人员的令牌。请输入令牌，或用带 #token=… 的地址打开。",
    "token.wrong": "这个令牌没有技术人员权限（{detail}）。请输入技术人员令牌。",
    "link.live": "● 实时连接", "link.lost": "● 连接中断，正在重连…",
    "summary": "共 {n} 台设备：{parts}", "summary.none": "没有配置设备",
    "state.ready": "正常", "state.degraded": "需要注意", "state.offline": "离线", "state.disabled": "已停用",
    "driver.escpos": "票据打印机", "driver.modbus_digits": "数码显示屏", "driver.framed_text": "文字显示屏",
    "driver.voice": "语音呼叫", "driver.terminal": "触摸终端", "driver.keypad": "呼叫器与评价器",
    "since": "自 {time} 起（{ago}）", "ago.now": "刚刚", "ago.min": "{n} 分钟前", "ago.hour": "{n} 小时前",
    "ago.day": "{n} 天前",
    "error.now": "问题：", "error.last": "上次的问题（已恢复）：",
    "action.test": "测试", "action.reconnect": "重连", "action.reload": "重新加载页面",
    "busy.test": "测试中…", "busy.reconnect": "重连中…", "busy.reload": "发送中…",
    "done.test": "测试完成", "done.reconnect": "已重连，现在：{state}", "done.reload": "已要求终端页面重新加载",
    "done.test_page": "测试页已打印", "done.pattern": "显示了测试图案 {pattern}，然后恢复原内容",
    "done.voice": "测试语音已生成（{s} 秒）", "done.voice_played": "测试语音已播放（{s} 秒）",
    "failed": "失败：{detail}", "at": "{time}",
    "raw": "全部参数", "yes": "是", "no": "否", "none": "—", "blank": "（空白）",
    "f.paper": "纸量", "paper.ok": "正常", "paper.near_end": "将尽", "paper.out": "缺纸",
    "f.cover": "纸仓盖", "cover.closed": "已关闭", "cover.open": "打开",
    "f.online": "联机", "f.connection": "连接", "f.profile": "型号",
    "f.jobs": "已打印（模拟）", "jobs": "{n} 张",
    "ticket.title": "最近打印的票面", "ticket.none": "还没有打印过。",
    "ticket.real": "真实打印机：没有票面图像。", "ticket.alt": "{id} 最近打印的票面",
    "ticket.failed": "票面图像取不到：{detail}",
    "f.should_show": "应显示", "f.shows": "驱动写入", "f.emulator": "模拟屏解码",
    "f.port": "端口", "f.unit": "单元号", "f.address": "地址", "f.restored": "掉电后重写",
    "flashing": "闪烁中", "mismatch": "显示与应显示不一致",
    "f.engine": "引擎", "f.voice": "声音", "f.queue": "排队", "f.said": "已播报", "f.dropped": "丢弃",
    "f.merged": "合并", "f.cache": "缓存", "cache": "命中 {hits}，未命中 {misses}，{clips} 段",
    "f.player": "播放器", "player.none": "无（只生成 WAV）",
    "ann.title": "最近一次播报", "ann.none": "还没有播报。",
    "f.text": "文字", "f.spoken": "读作", "f.number": "号码", "f.window": "窗口", "f.duration": "时长",
    "f.played": "播放", "seconds": "{s} 秒",
    "played.yes": "已播放", "played.no_player": "未播放（没有配置播放器）", "played.no": "未播放",
    "audio.label": "{id} 最近一次播报的录音", "audio.none": "没有录音。",
    "f.printer": "打印机", "f.printer_state": "打印机状态", "f.fallback": "备用打印机",
    "f.fallback_state": "备用打印机状态", "f.last_seen": "上次报到", "never": "从未报到",
    "f.page": "页面", "f.screen": "屏幕", "f.lang": "语言", "f.elder": "长者模式", "f.from": "地址",
    "f.offline_after": "离线判定", "offline_after": "{s} 秒没有报到", "f.reloads": "已要求重新加载",
    "f.input": "输入设备", "f.callers": "呼叫器（地址→窗口）", "f.raters": "评价器（地址→窗口）",
    "f.last_key": "最近按键", "last_key": "{address}号键盘（{window}号窗口）：{key} {action}",
    "f.last_action": "最近动作", "f.presses": "有效按键", "f.debounced": "重复按键（已忽略）",
    "f.unmapped": "未配置地址", "f.unknown_keys": "未配置按键", "f.rejected": "错误帧（已跳过）",
    "keys.none": "还没有按键。按任意键，这里会显示。", "f.displays": "键盘显示（模拟）",
    "display": "{address}号：{shows}（鸣响 {beeps} 次）", "done.keypads": "各键盘显示了“测试”",
    "refused": "被拒绝：{why}",
    "ago.s": "{n} 秒前", "f.when": "时间", "time.ago": "{time}（{ago}）",
    "log.title": "设备事件", "log.note": "页面打开后的事件，最新在上", "log.empty": "还没有设备事件。",
    "log.state": "状态 → {state}", "log.alert": "告警：{message}", "log.cleared": "告警解除：{message}",
    "log.dropped": "未播报 {text}：{reason}",
  },
  en: {
    title: "Device diagnostics", refresh: "Refresh", devices: "Devices",
    "token.title": "Technician token needed", "token.label": "Token", "token.submit": "OK",
    "token.missing": "This page needs a technician's token. Enter it, or open the address with #token=….",
    "token.wrong": "This token has no technician rights ({detail}). Enter a technician's token.",
    "link.live": "● Live", "link.lost": "● Connection lost, reconnecting…",
    "summary": "{n} devices: {parts}", "summary.none": "No devices configured",
    "state.ready": "ready", "state.degraded": "degraded", "state.offline": "offline", "state.disabled": "disabled",
    "driver.escpos": "Ticket printer", "driver.modbus_digits": "Digit display", "driver.framed_text": "Text board",
    "driver.voice": "Voice caller", "driver.terminal": "Touch terminal", "driver.keypad": "Window keypads",
    "since": "since {time} ({ago})", "ago.now": "just now", "ago.min": "{n} min ago", "ago.hour": "{n} h ago",
    "ago.day": "{n} days ago",
    "error.now": "Problem: ", "error.last": "Last problem (recovered): ",
    "action.test": "Test", "action.reconnect": "Reconnect", "action.reload": "Reload page",
    "busy.test": "Testing…", "busy.reconnect": "Reconnecting…", "busy.reload": "Sending…",
    "done.test": "Test done", "done.reconnect": "Reconnected, now: {state}", "done.reload": "The terminal's page was told to reload",
    "done.test_page": "Test page printed", "done.pattern": "Showed the test pattern {pattern}, then its content again",
    "done.voice": "Test phrase made ({s} s)", "done.voice_played": "Test phrase played ({s} s)",
    "failed": "Failed: {detail}",
    "raw": "All parameters", "yes": "yes", "no": "no", "none": "—", "blank": "(blank)",
    "f.paper": "Paper", "paper.ok": "ok", "paper.near_end": "near end", "paper.out": "out",
    "f.cover": "Cover", "cover.closed": "closed", "cover.open": "open",
    "f.online": "Online", "f.connection": "Connection", "f.profile": "Profile",
    "f.jobs": "Printed (emulated)", "jobs": "{n}",
    "ticket.title": "Last printed ticket", "ticket.none": "Nothing printed yet.",
    "ticket.real": "A real printer: no picture of its tickets.", "ticket.alt": "{id}'s last printed ticket",
    "ticket.failed": "No picture of the ticket: {detail}",
    "f.should_show": "Should show", "f.shows": "Written", "f.emulator": "Emulator decoded",
    "f.port": "Port", "f.unit": "Unit", "f.address": "Address", "f.restored": "Rewritten after power loss",
    "flashing": "flashing", "mismatch": "does not show what it should",
    "f.engine": "Engine", "f.voice": "Voice", "f.queue": "Queued", "f.said": "Said", "f.dropped": "Dropped",
    "f.merged": "Merged", "f.cache": "Cache", "cache": "{hits} hits, {misses} misses, {clips} clips",
    "f.player": "Player", "player.none": "none (WAV files only)",
    "ann.title": "Last announcement", "ann.none": "Nothing announced yet.",
    "f.text": "Text", "f.spoken": "Spoken as", "f.number": "Number", "f.window": "Window", "f.duration": "Length",
    "f.played": "Played", "seconds": "{s} s",
    "played.yes": "played", "played.no_player": "not played (no player configured)", "played.no": "not played",
    "audio.label": "{id}'s last announcement", "audio.none": "No recording.",
    "f.printer": "Printer", "f.printer_state": "Printer state", "f.fallback": "Fallback printer",
    "f.fallback_state": "Fallback printer state", "f.last_seen": "Last report", "never": "never reported",
    "f.page": "Page", "f.screen": "Screen", "f.lang": "Language", "f.elder": "Elder mode", "f.from": "Address",
    "f.offline_after": "Offline after", "offline_after": "{s} s without a report", "f.reloads": "Reloads asked",
    "f.input": "Input device", "f.callers": "Caller keypads (address → window)",
    "f.raters": "Rating keypads (address → window)",
    "f.last_key": "Last key", "last_key": "keypad {address} (window {window}): {key} {action}",
    "f.last_action": "Last action", "f.presses": "Presses", "f.debounced": "Repeats (ignored)",
    "f.unmapped": "Unmapped addresses", "f.unknown_keys": "Unmapped keys", "f.rejected": "Bad frames (skipped)",
    "keys.none": "No key yet. Press any key: it shows here.", "f.displays": "Keypad displays (emulated)",
    "display": "{address}: {shows} ({beeps} beeps)", "done.keypads": "测试 shown on every keypad",
    "refused": "refused: {why}",
    "ago.s": "{n} s ago", "f.when": "When", "time.ago": "{time} ({ago})",
    "log.title": "Device events", "log.note": "since this page opened, newest first", "log.empty": "No device events yet.",
    "log.state": "state → {state}", "log.alert": "alert: {message}", "log.cleared": "alert cleared: {message}",
    "log.dropped": "not announced {text}: {reason}",
  },
});

const STATES = ["ready", "degraded", "offline", "disabled"];
const ORDER = ["escpos", "voice", "terminal", "modbus_digits", "framed_text"];
const BOARDS = new Set(["modbus_digits", "framed_text"]);

let bearer = token(ROLE);
const cards = new Map();        // device id → Card
const logEvents = [];           // newest first
let authorised = false;

// ---------------------------------------------------------------- small words

const word = (key, fallback) => { const text = t(key); return text === key ? fallback : text; };
const stateWord = (state) => word(`state.${state}`, state);
const driverWord = (driver) => word(`driver.${driver}`, driver);

function show(value) {
  if (value === null || value === undefined || value === "") return t("none");
  if (value === true) return t("yes");
  if (value === false) return t("no");
  if (Array.isArray(value)) return value.length ? value.map(show).join(" | ") : t("none");
  return String(value);
}

const hallTime = () => inHall().seconds;

// A daemon's clock reading in seconds since 1970 (a terminal's last report, an
// announcement's start) as the hall's time of day.
const epochTime = (seconds) => inHall(seconds * 1000).seconds;

function secondsAgo(seconds) {
  const gone = Math.max(0, Math.round((now() - seconds * 1000) / 1000));
  return gone < 120 ? t("ago.s", { n: gone }) : ago(new Date(seconds * 1000).toISOString());
}

// "05:40:28" today, "11-28 17:02" another day.
function when(iso) {
  if (!iso) return "";
  return iso.slice(0, 10) === inHall().date ? iso.slice(11, 19) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function ago(iso) {
  const seconds = Math.max(0, (now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return t("ago.now");
  if (seconds < 3600) return t("ago.min", { n: Math.floor(seconds / 60) });
  if (seconds < 86400) return t("ago.hour", { n: Math.floor(seconds / 3600) });
  return t("ago.day", { n: Math.floor(seconds / 86400) });
}

// {"link": {"kind": "tcp"}} → [["link.kind", "tcp"]]
function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else if (Array.isArray(value) && value.some((item) => item && typeof item === "object")) {
    value.forEach((item, i) => flatten(item, `${prefix}[${i}]`, out));
  } else {
    out.push([prefix, value]);
  }
  return out;
}

function facts(rows) {
  const list = el("dl", { class: "facts" });
  for (const [label, value, kind] of rows) {
    if (value === undefined) continue;
    list.append(el("dt", {}, label), el("dd", kind ? { class: kind } : {}, value instanceof Node ? value : show(value)));
  }
  return list;
}

function badge(state) {
  return el("span", { class: `badge ${STATES.includes(state) ? state : ""}` }, stateWord(state));
}

// A board's lines as the board would light them; blanks stay visible as blanks.
function panel(lines, { flashing = [] } = {}) {
  const list = Array.isArray(lines) ? lines : [lines ?? ""];
  const box = el("div", { class: "led" });
  if (list.every((line) => !String(line).trim())) {
    box.append(el("span", { class: "led-blank" }, t("blank")));
    return box;
  }
  list.forEach((line, i) => box.append(el("span", {
    class: "led-line" + ((flashing === true || (Array.isArray(flashing) && flashing.includes(i))) ? " flash" : ""),
  }, String(line) || "\u00a0")));
  return box;
}

const trimmed = (lines) => (Array.isArray(lines) ? lines : [lines ?? ""]).map((line) => String(line).trim());
const sameLines = (a, b) => JSON.stringify(trimmed(a)) === JSON.stringify(trimmed(b));

// ---------------------------------------------------------------- a device's card

class Card {
  constructor(device) {
    this.id = device.id;
    this.driver = device.driver;
    this.device = device;
    this.outcomeState = null;   // {kind, key, vars, time} — re-worded on a language switch
    this.busy = null;
    this.ticketJobs = null;     // the emulator's job count the picture shows
    this.ticketUrl = null;
    this.ticketProblem = null;
    this.audioKey = null;       // which announcement the player holds
    this.audioUrl = null;
    this.audioProblem = null;

    const titleId = `device-${this.id}-title`;
    this.name = el("h3", { id: titleId, class: "device-id" }, this.id);
    this.kind = el("span", { class: "driver" });
    this.badgeBox = el("span", { class: "badge-box" });
    this.since = el("p", { class: "since" });
    this.error = el("p", { class: "last-error" });
    this.body = el("div", { class: "card-body" });
    this.raw = el("details", { class: "raw" });
    this.outcome = el("p", { class: "outcome", role: "status" });
    this.buttons = {};
    const actions = this.driver === "terminal" ? ["reload"] : ["test", "reconnect"];
    const bar = el("div", { class: "actions" });
    for (const action of actions) {
      this.buttons[action] = el("button", {
        type: "button", class: "button secondary", dataset: { action },
        onclick: () => this.act(action),
      });
      bar.append(this.buttons[action]);
    }
    bar.append(this.outcome);

    if (this.driver === "escpos") {
      this.ticketImage = el("img", { class: "ticket-image", hidden: true });
      this.ticketImage.addEventListener("load", () => this.ticketLoaded());
      this.ticketImage.addEventListener("error", () => {
        if (this.pendingTicketUrl && this.pendingTicketUrl !== this.ticketUrl) URL.revokeObjectURL(this.pendingTicketUrl);
      });
      this.ticketNote = el("p", { class: "note" });
      this.ticketTitle = el("h4");
      this.ticketFrame = el("div", { class: "ticket-frame", hidden: true }, this.ticketImage);
      this.ticketFigure = el("figure", { class: "ticket" }, this.ticketTitle, this.ticketFrame, this.ticketNote);
    }
    if (this.driver === "voice") {
      this.audio = el("audio", { controls: true, preload: "metadata", hidden: true });
      this.audioNote = el("p", { class: "note" });
    }

    this.node = el("article", {
      class: `card driver-${this.driver}`, dataset: { device: this.id }, "aria-labelledby": titleId,
    }, el("header", { class: "card-head" }, el("div", { class: "card-name" }, this.name, this.kind), this.badgeBox),
    this.since, this.error, this.body, this.raw, bar);
    this.update(device);
  }

  update(device) {
    this.device = device;
    this.render();
    if (this.driver === "escpos") this.refreshTicket();
    if (this.driver === "voice") this.refreshAudio();
  }

  render() {
    const device = this.device;
    const detail = device.detail || {};
    this.node.classList.remove(...STATES.map((s) => `state-${s}`));
    this.node.classList.add(`state-${device.state}`);
    this.kind.textContent = `${driverWord(device.driver)} · ${device.driver}`;
    this.badgeBox.replaceChildren(badge(device.state));
    this.renderSince();
    this.error.hidden = !device.last_error;
    if (device.last_error) {
      const recovered = device.state === "ready";
      this.error.className = `last-error ${recovered ? "recovered" : "current"}`;
      this.error.replaceChildren(el("strong", {}, t(recovered ? "error.last" : "error.now")), device.last_error);
    }

    const renderer = RENDER[device.driver] || renderOther;
    this.body.replaceChildren(...renderer(this, detail));

    const open = this.raw.open;
    const rows = flatten(detail).map(([key, value]) => [key, value]);
    this.raw.replaceChildren(el("summary", {}, t("raw")), facts(rows));
    this.raw.open = open;

    for (const [action, button] of Object.entries(this.buttons)) {
      button.textContent = t(this.busy === action ? `busy.${action}` : `action.${action}`);
      button.disabled = this.busy !== null;
      button.setAttribute("aria-busy", this.busy === action ? "true" : "false");
    }
    this.renderOutcome();
  }

  renderSince() {
    const since = this.device.since;
    this.since.textContent = since ? t("since", { time: when(since), ago: ago(since) }) : "";
  }

  renderOutcome() {
    const o = this.outcomeState;
    this.outcome.className = "outcome" + (o ? ` ${o.kind}` : "");
    if (!o) { this.outcome.textContent = ""; return; }
    const mark = { busy: "⏳", ok: "✓", bad: "✗" }[o.kind];
    this.outcome.textContent = `${mark} ${o.time} ${t(o.key, o.vars)}`;
  }

  async act(action) {
    if (this.busy) return;
    this.busy = action;
    this.outcomeState = { kind: "busy", key: `busy.${action}`, vars: {}, time: hallTime() };
    this.render();
    const time = () => hallTime();
    try {
      const device = await api("POST", `/devices/${encodeURIComponent(this.id)}/${action}`,
                               { token: bearer, timeoutMs: 90000 });
      this.busy = null;
      this.outcomeState = { kind: "ok", time: time(), ...doneWords(action, device) };
      this.update(device);
    } catch (error) {
      this.busy = null;
      if (error.status === 401 || error.status === 403) { askForToken(error); return; }
      this.outcomeState = { kind: "bad", key: "failed", vars: { detail: error.detail }, time: time() };
      if (error.body && error.body.device) this.update(error.body.device);
      else this.render();
    }
  }

  // The printer's last ticket, fetched with the token when the emulator's job count moves.
  async refreshTicket() {
    const emulator = (this.device.detail || {}).emulator;
    this.ticketTitle.textContent = t("ticket.title");
    if (!emulator || !emulator.emulated) { this.ticketNote.textContent = t("ticket.real"); return; }
    if (!emulator.last_png) {
      this.ticketNote.textContent = t("ticket.none");
      return;
    }
    if (this.ticketJobs === emulator.jobs && (this.ticketUrl || this.ticketProblem)) {
      this.ticketNote.textContent = this.ticketProblem ? t("ticket.failed", { detail: this.ticketProblem }) : "";
      return;
    }
    const jobs = emulator.jobs;
    this.ticketJobs = jobs;
    try {
      const url = await blobUrl(`/devices/${encodeURIComponent(this.id)}/last-ticket.png`, { token: bearer });
      if (this.ticketJobs !== jobs) { URL.revokeObjectURL(url); return; }   // a newer one is on its way
      this.pendingTicketUrl = url;
      this.ticketProblem = null;
      this.ticketImage.alt = t("ticket.alt", { id: this.id });
      this.ticketImage.src = url;
    } catch (error) {
      this.ticketProblem = error.detail;
      this.ticketNote.textContent = t("ticket.failed", { detail: error.detail });
    }
  }

  ticketLoaded() {
    if (this.ticketImage.src !== this.pendingTicketUrl) return;
    if (this.ticketUrl && this.ticketUrl !== this.pendingTicketUrl) URL.revokeObjectURL(this.ticketUrl);
    this.ticketUrl = this.pendingTicketUrl;
    this.ticketImage.hidden = false;
    this.ticketFrame.hidden = false;
    this.ticketNote.textContent = "";
  }

  // The voice's last announcement as a recording, fetched when a new one is made.
  async refreshAudio() {
    const last = (this.device.detail || {}).last_announcement;
    this.audio.setAttribute("aria-label", t("audio.label", { id: this.id }));
    const key = last ? `${last.wav}|${last.started_at}|${last.text}` : null;
    if (!key) { this.audio.hidden = true; this.audioNote.textContent = ""; return; }
    if (key === this.audioKey) {
      this.audioNote.textContent = this.audioProblem ? `${t("audio.none")} ${this.audioProblem}` : "";
      return;
    }
    this.audioKey = key;
    try {
      const url = await blobUrl(`/devices/${encodeURIComponent(this.id)}/last-announcement.wav`,
                                { token: bearer, timeoutMs: 20000 });
      if (this.audioKey !== key) { URL.revokeObjectURL(url); return; }
      const old = this.audioUrl;
      this.audioUrl = url;
      this.audioProblem = null;
      this.audio.src = url;
      this.audio.hidden = false;
      this.audioNote.textContent = "";
      if (old) URL.revokeObjectURL(old);
    } catch (error) {
      this.audioProblem = error.detail;
      this.audio.hidden = true;
      this.audioNote.textContent = `${t("audio.none")} ${error.detail}`;
    }
  }
}

function doneWords(action, device) {
  const detail = device.detail || {};
  if (action === "reconnect") return { key: "done.reconnect", vars: { state: stateWord(device.state) } };
  if (action === "reload") return { key: "done.reload", vars: {} };
  const test = detail.self_test || {};
  if (test.test_page === "printed") return { key: "done.test_page", vars: {} };
  if (test.pattern) return { key: "done.pattern", vars: { pattern: test.pattern } };
  if (test.test_pattern) return { key: "done.pattern", vars: { pattern: "“测试 TEST”" } };
  if (test.answers && test.shown) return { key: "done.keypads", vars: {} };
  if (test.kind === "test" && test.duration_s)
    return { key: test.played ? "done.voice_played" : "done.voice", vars: { s: test.duration_s.toFixed(1) } };
  return { key: "done.test", vars: {} };
}

// ---------------------------------------------------------------- per driver

function renderPrinter(card, d) {
  const emulator = d.emulator || {};
  const paperClass = d.paper === "ok" ? "good" : d.paper ? "bad" : "";
  return [el("div", { class: "printer" }, facts([
    [t("f.paper"), d.paper === undefined ? undefined : word(`paper.${d.paper}`, show(d.paper)), paperClass],
    [t("f.cover"), d.cover === undefined ? undefined : word(`cover.${d.cover}`, show(d.cover)),
     d.cover === "open" ? "bad" : d.cover === "closed" ? "good" : ""],
    [t("f.online"), d.online, d.online === false ? "bad" : d.online === true ? "good" : ""],
    [t("f.connection"), d.connection],
    [t("f.profile"), d.profile],
    [t("f.jobs"), emulator.emulated ? t("jobs", { n: emulator.jobs }) : undefined],
  ]), card.ticketFigure)];
}

function renderBoard(card, d) {
  const emulator = d.emulator;
  const lines = (value) => (Array.isArray(value) ? value : [value ?? ""]);
  const parts = [
    el("div", { class: "board-row" }, el("span", { class: "board-label" }, t("f.should_show")), panel(lines(d.should_show))),
    el("div", { class: "board-row" }, el("span", { class: "board-label" }, t("f.shows")),
       panel(lines(d.shows), { flashing: d.flashing })),
  ];
  if (emulator && emulator.emulated) {
    parts.push(el("div", { class: "board-row" }, el("span", { class: "board-label" }, t("f.emulator")),
                  panel(lines(emulator.shows), { flashing: emulator.flashing })));
  }
  const notes = [];
  const flashing = d.flashing === true || (Array.isArray(d.flashing) && d.flashing.length > 0);
  if (flashing) notes.push(el("span", { class: "tag" }, t("flashing")));
  if (d.should_show !== undefined && d.shows !== undefined && !sameLines(d.should_show, d.shows))
    notes.push(el("span", { class: "tag warn" }, "⚠ " + t("mismatch")));
  return [el("div", { class: "board" }, ...parts), notes.length ? el("p", { class: "tags" }, ...notes) : "",
          facts([
            [t("f.port"), d.port],
            [t("f.unit"), d.unit],
            [t("f.address"), d.address],
            [t("f.restored"), d.restored],
          ])];
}

function renderVoice(card, d) {
  const last = d.last_announcement;
  const cache = d.cache || {};
  const general = facts([
    [t("f.engine"), d.engine],
    [t("f.voice"), d.voice],
    [t("f.player"), d.player && d.player.length ? d.player.join(" ") : t("player.none")],
    [t("f.queue"), d.queue],
    [t("f.said"), d.said],
    [t("f.dropped"), d.dropped, d.dropped ? "bad" : ""],
    [t("f.cache"), d.cache ? t("cache", { hits: cache.hits ?? 0, misses: cache.misses ?? 0, clips: cache.clips ?? 0 }) : undefined],
  ]);
  const section = el("section", { class: "announcement" }, el("h4", {}, t("ann.title")));
  if (!last) {
    section.append(el("p", { class: "note" }, t("ann.none")));
  } else {
    let played;
    if (last.played) played = t("played.yes");
    else if (last.problem) played = `${t("played.no")}：${last.problem}`;
    else if (!d.player || !d.player.length) played = t("played.no_player");
    else played = t("played.no");
    section.append(el("p", { class: "said" }, last.text || ""), facts([
      [t("f.when"), typeof last.started_at === "number" ? epochTime(last.started_at) : undefined],
      [t("f.spoken"), last.spoken],
      [t("f.number"), last.number],
      [t("f.window"), last.window],
      [t("f.duration"), typeof last.duration_s === "number" ? t("seconds", { s: last.duration_s.toFixed(1) }) : undefined],
      [t("f.played"), played, last.played ? "good" : last.problem ? "bad" : ""],
    ]));
  }
  section.append(card.audio, card.audioNote);
  return [el("div", { class: "voice" }, general, section)];
}

function renderTerminal(card, d) {
  const page = d.page || {};
  const rows = [[t("f.printer"), d.printer]];
  if (d.printer_state) rows.push([t("f.printer_state"), badge(d.printer_state)]);
  if (d.fallback_printer) rows.push([t("f.fallback"), d.fallback_printer]);
  if (d.fallback_printer_state) rows.push([t("f.fallback_state"), badge(d.fallback_printer_state)]);
  rows.push(
    [t("f.last_seen"), d.last_seen ? t("time.ago", { time: epochTime(d.last_seen), ago: secondsAgo(d.last_seen) }) : t("never"),
     d.last_seen ? "" : "bad"],
    [t("f.page"), page.page],
    [t("f.screen"), page.screen],
    [t("f.lang"), page.lang],
    [t("f.elder"), page.elder],
    [t("f.from"), page.address],
    [t("f.offline_after"), d.offline_after_s === undefined ? undefined : t("offline_after", { s: d.offline_after_s })],
    [t("f.reloads"), d.reloads_asked],
  );
  return [facts(rows)];
}

function renderKeypad(card, d) {
  const counts = d.counts || {};
  const map = (m) => (m && Object.keys(m).length
    ? Object.entries(m).map(([address, window]) => `${address}→${window}`).join("  ") : undefined);
  const last = d.last_key;
  const action = d.last_action;
  const displays = ((d.emulator || {}).keypads) || {};
  const shown = Object.entries(displays).map(([address, k]) =>
    t("display", { address, shows: k.shows || t("blank"), beeps: k.beeps }));
  return [facts([
    [t("f.port"), d.port],
    [t("f.input"), d.input],
    [t("f.window"), d.window],
    [t("f.callers"), map(d.keypads)],
    [t("f.raters"), map(d.raters)],
    [t("f.last_key"), last ? t("last_key", { ...last }) : t("keys.none")],
    [t("f.last_action"), action ? [action.action, action.number || action.result || "",
                                    action.refused ? t("refused", { why: action.refused }) : ""]
      .filter(Boolean).join(" · ") : undefined, action && action.refused ? "bad" : ""],
    [t("f.presses"), counts.presses ?? 0],
    [t("f.debounced"), counts.debounced],
    [t("f.unmapped"), counts.unmapped, counts.unmapped ? "bad" : ""],
    [t("f.unknown_keys"), counts.unknown_keys, counts.unknown_keys ? "bad" : ""],
    [t("f.rejected"), counts.rejected, counts.rejected ? "bad" : ""],
    [t("f.displays"), shown.length ? el("span", { class: "lines" }, ...shown.map((line) => el("span", { class: "line" }, line))) : undefined],
  ])];
}

function renderOther(card, d) {
  return [facts(flatten(d).slice(0, 8))];
}

const RENDER = {
  escpos: renderPrinter, modbus_digits: renderBoard, framed_text: renderBoard,
  voice: renderVoice, terminal: renderTerminal, keypad: renderKeypad,
};

// ---------------------------------------------------------------- the page

function renderSummary() {
  const devices = [...cards.values()].map((card) => card.device);
  const box = $("#summary");
  if (!devices.length) { box.textContent = authorised ? t("summary.none") : ""; return; }
  const parts = [];
  for (const state of STATES) {
    const n = devices.filter((device) => device.state === state).length;
    if (n) parts.push(el("span", { class: `count ${state}` }, `${stateWord(state)} ${n}`));
  }
  box.replaceChildren(t("summary", { n: devices.length, parts: "" }), ...parts);
}

function place(devices) {
  const sorted = [...devices].sort((a, b) => rank(a) - rank(b));
  const grid = $("#devices");
  sorted.forEach((device, i) => {
    let card = cards.get(device.id);
    if (!card) { card = new Card(device); cards.set(device.id, card); }
    else card.update(device);
    if (grid.children[i] !== card.node) grid.insertBefore(card.node, grid.children[i] || null);
  });
  renderSummary();
}

function rank(device) {
  const i = ORDER.indexOf(device.driver);
  return i === -1 ? ORDER.length : i;
}

let loading = null;
async function loadAll() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const devices = await api("GET", "/devices", { token: bearer });
      authorised = true;
      $("#token-form").hidden = true;
      $("#main").hidden = false;
      $("#problem").hidden = true;
      place(devices);
    } catch (error) {
      if (error.status === 401 || error.status === 403) askForToken(error);
      else showProblem(error.detail);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

async function loadOne(id) {
  try {
    const device = await api("GET", `/devices/${encodeURIComponent(id)}`, { token: bearer });
    const card = cards.get(id);
    if (card) { card.update(device); renderSummary(); } else await loadAll();
  } catch (error) {
    if (error.status === 401 || error.status === 403) askForToken(error);
  }
}

// Events come in bursts (a call moves a board, the hall board and the voice):
// one fetch per burst.
const pending = new Set();
let pendingAll = false;
const refreshPending = coalesce(async () => {
  const all = pendingAll || pending.size > 3;
  const ids = [...pending];
  pending.clear();
  pendingAll = false;
  if (all) await loadAll();
  else await Promise.all(ids.map(loadOne));
}, { delayMs: COALESCE_MS });

function refreshSoon(id = null) {
  if (id === null) pendingAll = true; else pending.add(id);
  refreshPending();
}

function showProblem(detail) {
  const box = $("#problem");
  box.textContent = detail;
  box.hidden = false;
  $("#main").hidden = false;
}

function askForToken(error) {
  authorised = false;
  $("#main").hidden = true;
  askToken(error);
}

// ---------------------------------------------------------------- the log

function logLine(event) {
  const d = event.data || {};
  let what;
  let kind = "info";
  if (event.type === "device.changed") {
    what = t("log.state", { state: stateWord(d.state) }) + (d.problem ? ` · ${d.problem}` : "");
    kind = d.state === "ready" ? "ok" : d.state === "degraded" ? "warn" : "bad";
  } else if (event.type === "alert") {
    const cleared = d.state === "closed";
    what = t(cleared ? "log.cleared" : "log.alert", { message: d.message || d.kind || "" });
    kind = cleared ? "ok" : "warn";
  } else {
    what = t("log.dropped", { text: d.text || d.number || "", reason: d.reason || "" });
    kind = "warn";
  }
  return el("li", { class: `log-line ${kind}`, dataset: { type: event.type, device: d.device || "" } },
            el("time", { datetime: event.at || "" }, (event.at || "").slice(11, 19)),
            el("span", { class: "log-device" }, d.device || ""),
            el("span", { class: "log-what" }, what));
}

function renderLog() {
  $("#log").replaceChildren(...logEvents.map(logLine));
  $("#log-empty").hidden = logEvents.length > 0;
}

function addToLog(event) {
  logEvents.unshift(event);
  if (logEvents.length > LOG_LINES) logEvents.length = LOG_LINES;
  const list = $("#log");
  list.prepend(logLine(event));
  while (list.children.length > LOG_LINES) list.lastElementChild.remove();
  $("#log-empty").hidden = true;
}

// ---------------------------------------------------------------- language

function renderLanguage() {
  translate();
  document.title = `${t("title")} · kioskd`;
  for (const card of cards.values()) card.update(card.device);
  renderSummary();
  renderLog();
  explainToken();
}

// ---------------------------------------------------------------- start

function start() {
  renderLanguage();
  langButton($("#lang"), renderLanguage);
  $("#refresh").addEventListener("click", () => loadAll());
  onTokenSubmit(ROLE, (given) => { bearer = given; loadAll(); });

  syncClock().then((hall) => {
    $("#hall-name").textContent = hall.name || "";
  }).catch(() => {});
  loadAll();

  const linkState = $("#link-state");
  follow({
    onLive: () => {
      linkState.textContent = t("link.live");
      linkState.dataset.t = "link.live";
      linkState.className = "link-state";
      refreshSoon();
    },
    onLost: () => {
      linkState.textContent = t("link.lost");
      linkState.dataset.t = "link.lost";
      linkState.className = "link-state lost";
    },
    onEvent: (event) => {
      const d = event.data || {};
      // the devices' log: a hall alert (a long wait, a paused window) has no device
      const forDevices = event.type === "alert" ? Boolean(d.device) && d.state !== "acknowledged"
        : ["device.changed", "announcement.dropped"].includes(event.type);
      // a hall of several daemons hears every floor's events: this page is this daemon's
      const ours = !d.device || cards.size === 0 || cards.has(d.device);
      if (forDevices && ours) {
        addToLog(event);
        refreshSoon(d.device || null);
      } else if (event.type.startsWith("ticket.") || event.type === "window.changed") {
        refreshSoon();        // printers print, boards and the voice follow the queue
      }
    },
  });

  setInterval(() => { if (!document.hidden && authorised) loadAll(); }, POLL_MS);
  setInterval(() => { for (const card of cards.values()) card.renderSince(); }, 15000);
}

start();
