// kiosk.js — the touch-query terminal at the hall's entrance: a citizen picks a
// service, reads its guide (materials, time limit, fee, where to go) on one screen,
// takes a number (or a priority number) and sees it large with the people ahead.
// A citizen with an appointment checks in instead: types the code on the on-screen
// keypad or scans it (a scanner types the code and Enter, on any screen that waits
// for a citizen), and gets the ticket with a word on whether they came in time.
// Elder mode and English for whoever stands there; back to the start screen after
// `idle` seconds without a touch. The page reports to the daemon as its terminal
// (heartbeat) and reloads when a technician asks.
//
// Opened as /ui/kiosk?terminal=kiosk_1#token=KIOSKTOKEN  (optional &idle=SECONDS).

import {
  $, inHall, ApiError, api, coalesce, el, follow, lang, now, params, setLang, setToken, syncClock, t,
  token, translate, words,
} from "./kioskd.js";

words({
  zh: {
    elder: "长辈模式",
    setup_title: "终端设置",
    setup_text: "这个页面还不知道自己是哪一台终端。请技术人员在地址里加上参数 terminal，值为 devices.toml 中 driver = \"terminal\" 的设备编号，例如：",
    setup_bad: "终端 {terminal} 不能使用：{detail}",
    start_title: "请选择要办理的事项",
    start_hint: "先看办事指南，材料带齐再取号",
    priority_note: "老年人、残疾人、孕妇可优先取号，优先办理",
    token_label: "本终端需要取号令牌（由技术人员填写）",
    token_save: "保存",
    back: "返回",
    services_hint: "点击事项，查看办事指南",
    category_count: "{n}个事项",
    category_count_one: "1个事项",
    waiting_n: "等候 {n} 人",
    wait_about: "约 {n} 分钟",
    wait_none: "无需等待",
    wait_unknown: "窗口暂未开放",
    guide_label: "办事指南",
    code: "事项编码 {code}",
    load_line: "现在等候 {n} 人 · 预计等待 {wait}",
    materials_title: "需要带的材料（{n} 项）",
    no_materials: "无需提供材料",
    time_limit: "办理时限",
    fee: "收费标准",
    where: "办理地点",
    basis: "办理依据",
    notes: "温馨提示",
    scroll_more: "下面还有，请用手指向上滑动",
    steps_label: "办事流程",
    step_1: "选择事项",
    step_2: "看指南，备齐材料",
    step_3: "取号，等候叫号",
    load_empty: "现在无人排队，取号后很快就能办理",
    take: "取号",
    take_sub: "普通取号",
    take_priority: "优先取号",
    take_priority_sub: "老年人、残疾人、孕妇",
    issuing: "正在取号，请稍候…",
    err_auth: "本机暂时不能取号，请到服务台取号。",
    err_422: "这个事项现在不能在本机取号，请到服务台咨询。",
    err_503: "取号系统暂时忙，请稍后再按一次，或到服务台取号。",
    err_store: "取号系统暂时中断，工作人员已在处理。请到服务台取号，或稍等几分钟再按。",
    err_429: "本机刚才取号太多，请稍等片刻再按一次。如有需要请到服务台。",
    err_0: "本机暂时连不上取号系统，请稍后再按一次，或到服务台取号。",
    err_other: "取号没有成功，请再按一次，或到服务台取号。",
    to_start: "回到首页",
    your_number: "您的号码",
    priority_ticket: "优先号",
    ahead: "前面还有",
    ahead_n: "{n} 人",
    est_wait: "预计等待",
    est_soon: "马上就到",
    go_to: "请到",
    listen: "请留意大厅叫号和显示屏",
    printed: "号票已打印，请取走号票",
    print_failed_title: "打印失败",
    print_none_title: "本机没有打印号票",
    print_failed_text: "请记住您的号码，或用手机扫描二维码查看排队进度；如需纸质号票请到服务台。",
    qr_alt: "查看排队进度的二维码",
    done: "完成",
    idle_note: "{n} 秒后自动回到首页",
    link_ok: "已连接",
    link_lost: "与系统的连接中断",
    loading: "正在读取办事事项…",
    services_unreachable: "暂时读不到办事事项，请稍候，或到服务台咨询。",
    checkin_entry: "预约签到",
    checkin_entry_sub: "已经预约？输入或扫描签到码，优先办理",
    checkin_title: "预约签到",
    checkin_hint: "请输入预约短信里的签到码，或把签到码的二维码、条形码对准扫描口",
    checkin_label: "签到码",
    checkin_clear: "清空",
    checkin_retry: "重新输入",
    checkin_submit: "签到取号",
    checking_in: "正在签到，请稍候…",
    keypad_label: "签到码键盘",
    key_letters: "字母",
    key_digits: "数字",
    key_back: "删除",
    appointment_ticket: "预约优先",
  },
  en: {
    elder: "Large text",
    setup_title: "Terminal set-up",
    setup_text: "This page does not know which terminal it is. A technician adds the parameter terminal to its address: the id of a device with driver = \"terminal\" in devices.toml, for example:",
    setup_bad: "Terminal {terminal} cannot be used: {detail}",
    start_title: "What do you need to do?",
    start_hint: "Read the guide first, bring every document, then take a number",
    priority_note: "Elderly, disabled and pregnant visitors may take a priority number",
    token_label: "This terminal needs its kiosk token (technicians only)",
    token_save: "Save",
    back: "Back",
    services_hint: "Tap a service to see its guide",
    category_count: "{n} services",
    category_count_one: "1 service",
    waiting_n: "{n} waiting",
    wait_about: "about {n} min",
    wait_none: "no wait",
    wait_unknown: "no window open yet",
    guide_label: "Service guide",
    code: "Item code {code}",
    load_line: "{n} waiting now · estimated wait {wait}",
    materials_title: "Documents to bring ({n})",
    no_materials: "No documents needed",
    time_limit: "Time limit",
    fee: "Fee",
    where: "Where to go",
    basis: "Legal basis",
    notes: "Please note",
    scroll_more: "More below: swipe up with your finger",
    steps_label: "How it works",
    step_1: "Choose a service",
    step_2: "Read the guide, bring the documents",
    step_3: "Take a number, wait to be called",
    load_empty: "Nobody is waiting now: you will be served soon",
    take: "Take a number",
    take_sub: "Regular",
    take_priority: "Priority number",
    take_priority_sub: "Elderly, disabled, pregnant",
    issuing: "Taking your number, please wait…",
    err_auth: "This machine cannot issue numbers right now. Please go to the service desk.",
    err_422: "This service cannot be taken at this machine now. Please ask at the service desk.",
    err_503: "The system is busy. Please press again in a moment, or go to the service desk.",
    err_store: "The queue system is down for the moment and staff are on it. Please go to the service desk, or press again in a few minutes.",
    err_429: "Many tickets were just taken at this machine. Please wait a moment and press again, or go to the service desk.",
    err_0: "This machine cannot reach the queue system. Please press again in a moment, or go to the service desk.",
    err_other: "That did not work. Please press again, or go to the service desk.",
    to_start: "Start again",
    your_number: "Your number",
    priority_ticket: "Priority",
    ahead: "People ahead",
    ahead_n: "{n}",
    est_wait: "Estimated wait",
    est_soon: "very soon",
    go_to: "Go to",
    listen: "Listen for your number and watch the screens",
    printed: "Your ticket has printed. Please take it.",
    print_failed_title: "Printing failed",
    print_none_title: "No ticket was printed",
    print_failed_text: "Please remember your number, or scan the QR code with your phone to follow the queue. For a paper ticket, go to the service desk.",
    qr_alt: "QR code of your place in the queue",
    done: "Done",
    idle_note: "Back to the start in {n} s",
    link_ok: "connected",
    link_lost: "connection to the system lost",
    loading: "Loading the services…",
    services_unreachable: "The services cannot be read right now. Please wait, or ask at the service desk.",
    checkin_entry: "Appointment check-in",
    checkin_entry_sub: "Booked ahead? Type or scan your check-in code to be served first",
    checkin_title: "Appointment check-in",
    checkin_hint: "Type the check-in code from your booking message, or hold its QR code or barcode to the scanner",
    checkin_label: "Check-in code",
    checkin_clear: "Clear",
    checkin_retry: "Type again",
    checkin_submit: "Check in",
    checking_in: "Checking you in, please wait…",
    keypad_label: "Keypad for the check-in code",
    key_letters: "ABC",
    key_digits: "123",
    key_back: "Delete",
    appointment_ticket: "Appointment",
  },
});

const terminal = params.get("terminal");
const IDLE_S = Math.max(1, Number(params.get("idle")) || 60);
const REFRESH_MS = 1500;         // at most one catalogue refetch per this, however busy the hall
const PERIODIC_MS = 30000;       // and one at least this often, whatever the event stream does

let kioskToken = token("kiosk");
let hall = null;
let services = new Map();        // id → service from GET /services
let categories = [];             // from GET /hall: every service in one, in order
let screen = "start";
let categoryId = null;
let serviceId = null;
let ticket = null;
let checkin = null;               // the check-in that issued `ticket`: {on_time, message, message_en}
let refusal = null;               // why the last check-in was refused: {key} or the daemon's words
let busy = false;
let elder = false;
let structure = "";              // what the buttons were built from; rebuilt only when it changes
let reloadKey = null;
let reloadPending = false;
let heartbeatTimer = null;
let idleDeadline = Date.now() + IDLE_S * 1000;

// ------------------------------------------------------------ words for data

const svcName = (s) => (lang === "en" && s.name_en) ? s.name_en : s.name;
const catName = (c) => (lang === "en" && c.name_en) ? c.name_en : c.name;
const list = (items) => items.join(lang === "en" ? ", " : "、");

function waitWords(minutes, waiting) {
  if (minutes === null || minutes === undefined) return waiting ? t("wait_unknown") : t("wait_none");
  if (minutes <= 0 || !waiting) return t("wait_none");
  return t("wait_about", { n: minutes });
}

function loadWords(s) {
  return `${t("waiting_n", { n: s.waiting })} · ${waitWords(s.est_wait_min, s.waiting)}`;
}

function whereOf(s) {
  if (!s) return "";
  if (s.guide && s.guide.where) return s.guide.where;
  const windows = s.windows || [];
  const open = windows.filter((w) => w.state === "open");
  return list((open.length ? open : windows).map((w) => w.name));
}

// ------------------------------------------------------------ screens

function show(name) {
  screen = name;
  for (const section of document.querySelectorAll(".screen")) {
    section.hidden = section.id !== `screen-${name}`;
  }
  document.body.dataset.screen = name;
  $("#screens").scrollTop = 0;
  if (name === "guide") requestAnimationFrame(checkMore);
  if (name === "result") idleTick();
  if (name === "checkin") $("#checkin-code").focus({ preventScroll: true });
  else clearCheckin();
  if (name === "start" && reloadPending && !busy) location.reload();
}

function render() {
  translate();
  $("#lang").textContent = lang === "en" ? "中文" : "English";
  $("#lang").lang = lang === "en" ? "zh-CN" : "en";
  document.title = hall ? `${hall.name} · ${t("start_title")}` : t("start_title");
  const key = JSON.stringify([lang, categories.map((c) => [c.id, c.services])]);
  if (key !== structure) {
    structure = key;
    buildStart();
    if (categoryId) buildServices();
  }
  if (serviceId) buildGuide();
  if (ticket) buildResult();
  buildKeypad();
  if (refusal) showRefusal();
  updateCounts();
  showLink(linkOk);
}

function serviceButton(s) {
  return el("button", { type: "button", class: "service", dataset: { service: s.id },
                        onclick: () => openGuide(s.id) },
    el("span", { class: "service-name" }, svcName(s)),
    el("span", { class: "service-load", dataset: { load: s.id } }, loadWords(s)));
}

function buildStart() {
  const box = $("#categories");
  box.replaceChildren();
  if (categories.length === 1) {          // one group: its services straight away
    box.className = "service-list";
    box.append(...categories[0].services.map((id) => serviceButton(services.get(id))));
    return;
  }
  box.className = "tiles";
  const n = categories.length;
  box.style.setProperty("--cols-portrait", n > 5 ? 2 : 1);
  box.style.setProperty("--cols-landscape", n > 4 && n <= 6 ? 3 : Math.min(Math.max(n, 1), 4));
  for (const c of categories) {
    box.append(el("button", { type: "button", class: "tile", dataset: { category: c.id },
                              onclick: () => openCategory(c.id) },
      el("span", { class: "tile-name" }, catName(c)),
      el("span", { class: "tile-services" }, list(c.services.map((id) => svcName(services.get(id))))),
      el("span", { class: "tile-sub", dataset: { catLoad: c.id } }, "")));
  }
}

function buildServices() {
  const c = categories.find((x) => x.id === categoryId);
  if (!c) { categoryId = null; return; }
  $("#category-title").textContent = catName(c);
  $("#service-list").replaceChildren(...c.services.map((id) => serviceButton(services.get(id))));
}

function updateCounts() {
  for (const node of document.querySelectorAll("[data-load]")) {
    const s = services.get(node.dataset.load);
    if (s) node.textContent = loadWords(s);
  }
  for (const node of document.querySelectorAll("[data-cat-load]")) {
    const c = categories.find((x) => x.id === node.dataset.catLoad);
    if (!c) continue;
    const waiting = c.services.reduce((sum, id) => sum + (services.get(id)?.waiting || 0), 0);
    const count = c.services.length === 1 ? t("category_count_one") : t("category_count", { n: c.services.length });
    node.textContent = `${count} · ${t("waiting_n", { n: waiting })}`;
  }
  const s = services.get(serviceId);
  if (s) {
    $("#guide-load").textContent = s.waiting ? t("load_line", { n: s.waiting, wait: waitWords(s.est_wait_min, s.waiting) })
                                             : t("load_empty");
  }
}

function openCategory(id) {
  categoryId = id;
  buildServices();
  updateCounts();
  show("services");
}

function openGuide(id) {
  serviceId = id;
  hideProblem();
  buildGuide();
  updateCounts();
  show("guide");
}

function buildGuide() {
  const s = services.get(serviceId);
  if (!s) return;
  const g = s.guide || {};
  $("#guide-title").textContent = svcName(s);
  $("#guide-code").textContent = s.code ? t("code", { code: s.code }) : "";
  const materials = g.materials || [];
  $("#materials-title").textContent = materials.length ? t("materials_title", { n: materials.length })
                                                       : t("no_materials");
  $("#materials").replaceChildren(...materials.map((m) => el("li", {}, m)));
  const facts = [["time_limit", g.time_limit], ["fee", g.fee], ["where", whereOf(s)],
                 ["basis", g.basis], ["notes", g.notes]].filter(([, value]) => value);
  $("#facts").replaceChildren(...facts.map(([key, value]) =>
    el("div", { class: `fact fact-${key}` }, el("dt", {}, t(key)), el("dd", {}, value))));
  requestAnimationFrame(checkMore);
}

// A long list scrolls inside its panel; say so until its end is in view.
function checkMore() {
  const box = $("#materials");
  const more = box.scrollHeight - box.scrollTop - box.clientHeight > 4;
  $("#materials-more").hidden = !more;
  box.parentElement.classList.toggle("has-more", more);
}

function buildResult() {
  const s = services.get(ticket.service);
  $("#screen-result").dataset.ticket = ticket.id;
  $("#result-number").textContent = ticket.number;
  $("#result-service").textContent = s ? svcName(s) : ticket.service_name;
  $("#result-priority").hidden = !ticket.priority;
  $("#result-priority").dataset.t = ticket.appointment ? "appointment_ticket" : "priority_ticket";
  $("#result-priority").textContent = t($("#result-priority").dataset.t);
  const note = $("#result-appointment");
  note.hidden = !(checkin && ticket.appointment);
  if (!note.hidden) {
    note.classList.toggle("late", !checkin.on_time);
    $("#result-appointment-text").textContent = lang === "en" ? checkin.message_en : checkin.message;
  }
  $("#result-ahead").textContent = t("ahead_n", { n: ticket.waiting_ahead ?? 0 });
  $("#result-wait").textContent = ticket.waiting_ahead ? waitWords(ticket.est_wait_min, ticket.waiting_ahead)
                                                       : t("est_soon");
  $("#result-where").textContent = whereOf(s) || ticket.window_name || "";
  const status = ticket.print ? ticket.print.status : "none";
  $("#print-ok").hidden = status !== "printed";
  $("#print-failed").hidden = status === "printed";
  $("#print-failed-title").textContent = t(status === "failed" ? "print_failed_title" : "print_none_title");
  $("#print-failed-text").textContent = t("print_failed_text");
  const qr = $("#result-qr");
  const src = `/api/v1/tickets/${encodeURIComponent(ticket.id)}/qr.svg`;
  if (status !== "printed" && qr.getAttribute("src") !== src) qr.src = src;
  qr.alt = t("qr_alt");
  document.body.classList.toggle("print-failed", status !== "printed");
}

// ------------------------------------------------------------ taking a number

async function take(priority) {
  if (busy || !serviceId) return;
  busy = true;
  hideProblem();
  setBusy(true);
  try {
    ticket = await api("POST", "/tickets", {
      body: { service: serviceId, priority, terminal }, token: kioskToken, timeoutMs: 20000,
    });
    checkin = null;
    buildResult();
    show("result");
  } catch (error) {
    showProblem(error);
  } finally {
    busy = false;
    setBusy(false);
    touched();
  }
}

function setBusy(on) {
  $("#issue-busy").hidden = !on;
  for (const button of document.querySelectorAll("#screen-guide button")) button.disabled = on;
  document.body.classList.toggle("busy", on);
}

// 503: the queue's database away (say so plainly: no number can be taken here now),
// or a device busy (press again).
function unavailable(error) {
  return (error.body || {}).reason === "store_unavailable" ? "err_store" : "err_503";
}

function showProblem(error) {
  const status = error instanceof ApiError ? error.status : 0;
  let key = "err_other";
  if (status === 401 || status === 403) { key = "err_auth"; askToken(); }
  else if (status === 422) key = "err_422";
  else if (status === 429) key = "err_429";     // [limits]: a stuck button, a prank
  else if (status === 503) key = unavailable(error);
  else if (status === 0) key = "err_0";
  const text = $("#issue-problem-text");
  text.dataset.t = key;
  text.textContent = t(key);
  text.title = error.detail || "";        // the daemon's words, for a technician
  $("#issue-problem").hidden = false;
  document.body.classList.add("has-problem");
}

function hideProblem() {
  $("#issue-problem").hidden = true;
  document.body.classList.remove("has-problem");
}

// ------------------------------------------------------------ checking in with a code

const CODE_CHARS = /[^A-Z0-9-]/g;
const CODE_MIN = 4;
const CODE_MAX = 32;
const KEYS = {
  digits: [["1", "2", "3"], ["4", "5", "6"], ["7", "8", "9"], ["letters", "0", "back"]],
  letters: [["A", "B", "C", "D", "E", "F", "G"], ["H", "I", "J", "K", "L", "M", "N"],
            ["O", "P", "Q", "R", "S", "T", "U"], ["V", "W", "X", "Y", "Z", "-", "back"],
            ["digits"]],
};
let keypadMode = "digits";
let keypadBuilt = "";
let staleCode = false;           // the field holds a refused code: the next character starts anew

function openCheckin(first = "") {
  if (busy) return;
  if (screen === "result") resetForNext();
  clearCheckin();
  show("checkin");
  if (first) typeInto(first);
}

function codeField() {
  return $("#checkin-code");
}

function setCode(value) {
  const field = codeField();
  field.value = value.toUpperCase().replace(CODE_CHARS, "").slice(0, CODE_MAX);
  $("#checkin-submit").disabled = busy || field.value.length < CODE_MIN;
}

// A character typed on the keypad or by a keyboard or scanner outside the field.
function typeInto(text) {
  if (staleCode) { staleCode = false; hideRefusal(); setCode(""); }
  setCode(codeField().value + text);
}

function backspace() {
  if (staleCode) { staleCode = false; hideRefusal(); }
  setCode(codeField().value.slice(0, -1));
}

function clearCheckin() {
  staleCode = false;
  hideRefusal();
  setCode("");
  keypadMode = "digits";
  buildKeypad();
}

function buildKeypad() {
  const key = `${lang}|${keypadMode}`;
  if (key === keypadBuilt) return;
  keypadBuilt = key;
  const pad = $("#keypad");
  pad.dataset.mode = keypadMode;
  pad.replaceChildren(...KEYS[keypadMode].map((row) => el("div", { class: "keypad-row" },
    ...row.map((name) => {
      if (name === "back") {
        return el("button", { type: "button", class: "key key-back", dataset: { key: "back" },
                              "aria-label": t("key_back") }, "⌫");
      }
      if (name === "letters" || name === "digits") {
        return el("button", { type: "button", class: "key key-mode", dataset: { key: name } },
                  t(`key_${name}`));
      }
      return el("button", { type: "button", class: "key", dataset: { key: name } }, name);
    }))));
}

function pressKey(event) {
  const button = event.target.closest("[data-key]");
  if (!button || busy) return;
  const name = button.dataset.key;
  if (name === "back") backspace();
  else if (name === "letters" || name === "digits") { keypadMode = name; buildKeypad(); }
  else typeInto(name);
  codeField().focus({ preventScroll: true });
}

async function submitCheckin(event) {
  if (event) event.preventDefault();
  const code = codeField().value;
  if (busy || code.length < CODE_MIN) return;
  busy = true;
  hideRefusal();
  setCheckinBusy(true);
  try {
    const answer = await api("POST", "/appointments/check-in", {
      body: { code, terminal }, token: kioskToken, timeoutMs: 20000,
    });
    checkin = answer;
    ticket = answer.ticket;
    buildResult();
    show("result");
  } catch (error) {
    showRefusal(error);
  } finally {
    busy = false;
    setCheckinBusy(false);
    touched();
  }
}

function setCheckinBusy(on) {
  $("#checkin-busy").hidden = !on;
  for (const button of document.querySelectorAll("#screen-checkin button")) button.disabled = on;
  if (!on) setCode(codeField().value);
  document.body.classList.toggle("busy", on);
}

// The daemon says why (its words in both languages); without them, the same plain
// words as a failed issue.
function showRefusal(error) {
  if (error) {
    const body = error.body || {};
    const status = error instanceof ApiError ? error.status : 0;
    if (body.message && body.message_en) refusal = { message: body.message, message_en: body.message_en };
    else if (status === 401 || status === 403) { refusal = { key: "err_auth" }; askToken(); }
    else if (status === 503) refusal = { key: unavailable(error) };
    else if (status === 0) refusal = { key: "err_0" };
    else refusal = { key: "err_other" };
    refusal.detail = error.detail || "";
    staleCode = true;
  }
  const text = $("#checkin-problem-text");
  text.textContent = refusal.key ? t(refusal.key) : (lang === "en" ? refusal.message_en : refusal.message);
  text.title = refusal.detail;            // the daemon's words, for a technician
  $("#checkin-problem").hidden = false;
  document.body.classList.add("has-problem");
}

function hideRefusal() {
  refusal = null;
  $("#checkin-problem").hidden = true;
  if ($("#issue-problem").hidden) document.body.classList.remove("has-problem");
}

// A scanner is a keyboard: on the screens that wait for a citizen, the first
// character of a code opens the check-in with it; on the check-in screen, keys
// typed anywhere go to the code field, and Enter checks in.
function scannerKey(event) {
  if (event.ctrlKey || event.altKey || event.metaKey || busy) return;
  const inField = event.target === codeField();
  const typing = !inField && event.target.closest && event.target.closest("input, textarea, select");
  if (typing) return;                                   // the technician's token form
  const char = event.key.length === 1 && /[A-Za-z0-9-]/.test(event.key) ? event.key : null;
  if (screen === "checkin") {
    if (inField) {                                      // the field types it; a refused code is replaced
      if (char && staleCode) { staleCode = false; hideRefusal(); setCode(""); }
      else if (event.key === "Backspace" && staleCode) { staleCode = false; hideRefusal(); }
      return;
    }
    if (char) { event.preventDefault(); typeInto(char); codeField().focus({ preventScroll: true }); }
    else if (event.key === "Backspace") { event.preventDefault(); backspace(); }
    else if (event.key === "Enter") { event.preventDefault(); submitCheckin(); }
    return;
  }
  if (char && (screen === "start" || screen === "result")) {
    event.preventDefault();
    openCheckin(char);
  }
}

// ------------------------------------------------------------ elder mode, language, idle

function setElder(on) {
  elder = on;
  document.body.classList.toggle("elder", on);
  $("#elder").setAttribute("aria-pressed", on ? "true" : "false");
  requestAnimationFrame(checkMore);
}

function touched() {
  idleDeadline = Date.now() + IDLE_S * 1000;
}

function pristine() {
  return screen === "start" && !elder && lang === "zh" && $("#start-problem").hidden;
}

function resetForNext() {
  hideProblem();
  clearCheckin();
  categoryId = null;
  serviceId = null;
  ticket = null;
  checkin = null;
  document.body.classList.remove("print-failed");
  setElder(false);
  if (lang !== "zh") setLang("zh", { remember: false });
  render();
  show("start");
}

function idleTick() {
  const left = Math.ceil((idleDeadline - Date.now()) / 1000);
  if (screen === "result") $("#idle-note").textContent = t("idle_note", { n: Math.max(0, left) });
  if (left > 0 || busy || screen === "setup") return;
  touched();
  if (!pristine()) resetForNext();
}

// ------------------------------------------------------------ the hall, kept current

async function loadHall() {
  try {
    hall = await syncClock();
    $("#hall-name").textContent = hall.name;
    tickClock();
  } catch {
    setTimeout(loadHall, 5000);
  }
}

const refreshSoon = coalesce(() => loadServices(), { gapMs: REFRESH_MS });

async function loadServices() {
  try {
    const [list, hallNow] = await Promise.all([api("GET", "/services"),
                                               hall ? Promise.resolve(hall) : api("GET", "/hall")]);
    hall = hall || hallNow;
    services = new Map(list.map((s) => [s.id, s]));
    categories = hall.categories;      // every service is in one (the daemon's `other` last)
    $("#start-problem").hidden = true;
    render();
    document.body.dataset.ready = "1";
  } catch (error) {
    if (!services.size) {
      const box = $("#start-problem");
      box.dataset.t = "services_unreachable";
      box.textContent = t("services_unreachable");
      box.hidden = false;
    }
    if (error.status === 0 || error.status >= 500) setTimeout(refreshSoon, 5000);
  }
}

function tickClock() {
  if (hall) $("#clock").textContent = inHall().time;
}

// ------------------------------------------------------------ heartbeat, reload, token

let linkOk = true;

function showLink(ok) {
  linkOk = ok;
  const dot = $("#link");
  dot.classList.toggle("lost", !ok);
  dot.dataset.tLabel = ok ? "link_ok" : "link_lost";
  dot.setAttribute("aria-label", t(dot.dataset.tLabel));
  dot.title = t(dot.dataset.tLabel);
}

async function heartbeat() {
  clearTimeout(heartbeatTimer);
  let next = 5;
  try {
    const answer = await api("POST", `/devices/${encodeURIComponent(terminal)}/heartbeat`, {
      body: { page: "kiosk", screen: `${innerWidth}x${innerHeight}`, lang, elder },
      token: kioskToken, timeoutMs: 5000,
    });
    showLink(true);
    next = Number(answer.interval_s) || 5;
    if (reloadKey === null) reloadKey = answer.reload_key;
    else if (answer.reload_key !== reloadKey) {
      // A technician asked, or the daemon restarted: reload, but never under a
      // citizen's finger — wait for the start screen.
      reloadPending = true;
      if (screen === "start" && !busy) { location.reload(); return; }
    }
  } catch (error) {
    showLink(false);
    if (error.status === 401 || error.status === 403) askToken();
    else if (error.status === 404 || error.status === 409 || error.status === 422) {
      setupProblem(error.detail);
    }
  }
  heartbeatTimer = setTimeout(heartbeat, next * 1000);
}

function askToken() {
  $("#token-form").hidden = false;
}

function saveToken(event) {
  event.preventDefault();
  const value = $("#token-input").value.trim();
  setToken("kiosk", value);
  kioskToken = value;
  $("#token-input").value = "";
  $("#token-form").hidden = true;
  heartbeat();
}

function setupProblem(detail) {
  const text = $("#setup-detail");
  text.textContent = t("setup_bad", { terminal, detail });
  text.hidden = false;
  showSetup();
}

function showSetup() {
  $("#link").hidden = true;
  $("#setup-text").textContent = t("setup_text");
  $("#setup-example").textContent = `${location.origin}/ui/kiosk?terminal=kiosk_1#token=…`;
  show("setup");
}

// ------------------------------------------------------------ start

function wire() {
  for (const type of ["pointerdown", "touchstart", "keydown", "wheel", "scroll"]) {
    document.addEventListener(type, touched, { capture: true, passive: true });
  }
  // A long press (or a right click) would open the browser's menu: print, save,
  // inspect. No Chromium flag turns it off, so the page refuses it.
  document.addEventListener("contextmenu", (event) => event.preventDefault());
  $("#elder").addEventListener("click", () => { setElder(!elder); });
  $("#lang").addEventListener("click", () => {
    setLang(lang === "zh" ? "en" : "zh", { remember: false });
    render();
    if (screen === "setup") showSetup();
  });
  for (const button of document.querySelectorAll("[data-go]")) {
    button.addEventListener("click", () => { hideProblem(); show(button.dataset.go); });
  }
  $("#guide-back").addEventListener("click", () => {
    hideProblem();
    show(categoryId && categories.length > 1 ? "services" : "start");
  });
  $("#take").addEventListener("click", () => take(false));
  $("#checkin-open").addEventListener("click", () => openCheckin());
  $("#keypad").addEventListener("click", pressKey);
  $("#checkin-form").addEventListener("submit", submitCheckin);
  $("#checkin-submit").addEventListener("click", () => submitCheckin());
  $("#checkin-code").addEventListener("input", () => setCode(codeField().value));
  $("#checkin-clear").addEventListener("click", () => { clearCheckin(); codeField().focus(); });
  $("#checkin-retry").addEventListener("click", () => { clearCheckin(); codeField().focus(); });
  document.addEventListener("keydown", scannerKey);
  $("#take-priority").addEventListener("click", () => take(true));
  $("#done").addEventListener("click", () => resetForNext());
  $("#materials").addEventListener("scroll", checkMore, { passive: true });
  addEventListener("resize", () => requestAnimationFrame(checkMore));
  $("#token-form").addEventListener("submit", saveToken);
}

function boot() {
  wire();
  render();
  loadHall();
  if (!terminal) { showSetup(); return; }
  loadServices();
  follow({
    onEvent(event) {
      if (event.type.startsWith("ticket.") || event.type === "window.changed") refreshSoon();
    },
    onLive: refreshSoon,
  });
  heartbeat();
  setInterval(refreshSoon, PERIODIC_MS);
  setInterval(idleTick, 250);
  setInterval(tickClock, 5000);
}

boot();
