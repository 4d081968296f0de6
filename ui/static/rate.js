// rate.js — the rating pad (评价器) facing the citizen at a window: at rest it shows the
// window's name; when the clerk completes a ticket (its ticket.done on the event
// stream, or GET /windows/{w}/rating at load) it shows the number, five big buttons
// and the time left; one tap rates (POST), thanks the citizen, and rests again.
// A refusal says why; the time running out rests. Opened as
// /ui/rate?window=3#token=… (the evaluator's token, kept in localStorage).

import {
  $, api, askToken, coalesce, el, explainToken, follow, lang, langButton, onTokenSubmit, params, t,
  token, translate, words,
} from "./kioskd.js";

words({
  zh: {
    title: "服务评价", "title.window": "{window} · 服务评价",
    ask: "请对本次服务进行评价", "idle.ask": "请对本次服务进行评价", "idle.note": "窗口办结后，请在这里点选您的评价", levels: "评价等级",
    remaining: "剩余 {n} 秒", thanks: "感谢您的评价", "thanks.level": "您的评价：{name}",
    refused: "未能评价",
    pick: "请选择评价器所在的窗口", "pick.unknown": "没有窗口“{w}”，请从下面选择。",
    "token.title": "需要评价器令牌", "token.label": "令牌（由管理员发放）", "token.submit": "确定",
    "token.missing": "这个评价器需要评价器（evaluator）的令牌。请输入令牌，或用带 #token=… 的地址打开。",
    "token.wrong": "这个令牌不能在本窗口评价（{detail}）。请输入评价器的令牌。",
    "link.lost": "连接中断，正在重连…",
    "why.unreachable": "连接不上服务器，请再点一次", "why.timeout": "服务器没有及时回答，请再点一次",
  },
  en: {
    title: "Rate our service", "title.window": "{window} · Rate our service",
    ask: "Please rate the service you just received", "idle.ask": "Please rate our service",
    "idle.note": "When your matter is done, rate it here",
    levels: "Rating", remaining: "{n} s left", thanks: "Thank you for your rating",
    "thanks.level": "Your rating: {name}", refused: "The rating was not taken",
    pick: "Choose the window this pad stands at", "pick.unknown": "There is no window “{w}”; choose one below.",
    "token.title": "Evaluator token needed", "token.label": "Token (from the hall's administrator)",
    "token.submit": "OK",
    "token.missing": "This pad needs the evaluator's token. Enter it, or open the address with #token=….",
    "token.wrong": "This token cannot rate at this window ({detail}). Enter the evaluator's token.",
    "link.lost": "Connection lost, reconnecting…",
    "why.unreachable": "The server cannot be reached; please tap again",
    "why.timeout": "The server did not answer in time; please tap again",
    "why.not_done": "Ticket {number} is not completed yet; it can be rated once it is.",
    "why.no_show": "Ticket {number} was marked as not present; it cannot be rated.",
    "why.cancelled": "Ticket {number} was cancelled; it cannot be rated.",
    "why.day_end": "Ticket {number} was closed at the end of the day, not completed at a window.",
    "why.other_window": "Ticket {number} was completed at another window; rate it there.",
    "why.rated": "Already rated: each service is rated once.",
    "why.late": "The time to rate has passed (up to {s} seconds after completion).",
  },
});

const ROLE = "evaluator";
const THANKS_MS = 4000;          // "thank you" stays this long, then the pad rests
const REFUSED_MS = 6000;         // a refusal stays a little longer: it is read, not glanced at
const TICK_MS = 250;

const windowId = params.get("window");
const path = windowId ? `/windows/${encodeURIComponent(windowId)}/rating` : null;
let bearer = token(ROLE);

const pad = {
  name: null,            // the window's name (GET /windows/{w})
  window: null,          // GET /windows/{w}/rating, the last answer
  screen: null,          // picker | idle | rate | thanks | refused
  shown: null,           // {ticket, deadline (performance.now() ms)} while rating
  sending: false,        // a tap is on its way: no other is sent
  posts: 0,              // ratings sent (for the tests: a double tap sends one)
  chosen: null,          // the level last sent
  refusal: null,         // the last refusal {status, detail, reason, number}
};
let restTimer = null;
let tickTimer = null;
let stream = null;
let buttons = [];        // the five level buttons, made once from the daemon's levels
const namesEn = new Map();   // service id → its English name (GET /services)

// ---------------------------------------------------------------- screens

function show(name) {
  pad.screen = name;
  for (const id of ["picker", "idle", "rate", "thanks", "refused"]) $(`#${id}`).hidden = id !== name;
  $("#token-form").hidden = true;
}

function windowName() {
  return (pad.window && pad.window.window_name) || pad.name || "";
}

function levelName(level) {
  const found = pad.window && pad.window.levels.find((l) => l.level === level);
  if (!found) return String(level);
  return lang === "en" ? found.name_en : found.name;
}

function renderTitle() {
  const name = windowName();
  $("#title").textContent = name ? t("title.window", { window: name }) : t("title");
  document.title = `${$("#title").textContent} · kioskd`;
  $("#idle-window").textContent = name;
}

// Back to rest. With askAgain, the daemon is asked at once whether a ticket was
// completed meanwhile (during the thanks, say).
function rest({ askAgain = true } = {}) {
  clearTimeout(restTimer);
  clearInterval(tickTimer);
  restTimer = tickTimer = null;
  pad.shown = null;
  pad.sending = false;
  show("idle");
  if (askAgain) refresh();
}

// ---------------------------------------------------------------- rating

function buildButtons() {
  if (buttons.length || !pad.window) return;
  buttons = pad.window.levels.map((l) => {
    const stars = "★".repeat(l.level) + "☆".repeat(5 - l.level);      // a picture, not read out
    return el("button", {
      class: `level level-${l.level}`, type: "button", dataset: { level: l.level },
      onclick: () => tapped(l.level),
    }, el("span", { class: "stars", "aria-hidden": "true" }, stars), el("span", { class: "level-name" }));
  });
  $("#levels").append(...buttons);
  renderLevels();
}

function renderLevels() {
  for (const button of buttons) {
    $(".level-name", button).textContent = levelName(Number(button.dataset.level));
  }
}

function ask(ticket, remainingS) {
  clearTimeout(restTimer);
  restTimer = null;
  pad.shown = { ticket, deadline: performance.now() + remainingS * 1000 };
  pad.sending = false;
  for (const button of buttons) { button.disabled = false; button.classList.remove("chosen"); }
  $("#rate-number").textContent = ticket.number;
  $("#rate-problem").textContent = "";
  renderService();
  show("rate");
  tick();
  clearInterval(tickTimer);
  tickTimer = setInterval(tick, TICK_MS);
}

function renderService() {
  if (!pad.shown) return;
  const ticket = pad.shown.ticket;
  $("#rate-service").textContent = (lang === "en" && namesEn.get(ticket.service)) || ticket.service_name;
}

// The time left, by this pad's own clock from the daemon's `remaining_s`: no clock
// needs to agree with the daemon's.
function tick() {
  if (!pad.shown || pad.screen !== "rate") return;
  const left = (pad.shown.deadline - performance.now()) / 1000;
  if (left <= 0 && !pad.sending) { rest(); return; }
  const within = (pad.window && pad.window.within_s) || 120;
  $("#countdown").textContent = t("remaining", { n: Math.max(0, Math.ceil(left)) });
  $("#timebar-fill").style.transform = `scaleX(${Math.max(0, Math.min(1, left / within))})`;
}

async function tapped(level) {
  if (pad.screen !== "rate" || pad.sending || !pad.shown) return;     // a second tap: nothing
  pad.sending = true;
  pad.posts += 1;
  pad.chosen = level;
  for (const button of buttons) {
    button.disabled = true;
    button.classList.toggle("chosen", Number(button.dataset.level) === level);
  }
  const ticket = pad.shown.ticket;
  try {
    await api("POST", path, { token: bearer, body: { ticket: ticket.id, level } });
    thank(level);
  } catch (error) {
    if (error.status === 401 || error.status === 403) { needToken(error); return; }
    if (error.status === 0) {                      // not heard: the citizen may tap again
      pad.sending = false;
      for (const button of buttons) { button.disabled = false; button.classList.remove("chosen"); }
      $("#rate-problem").textContent = t(`why.${error.detail}`);
      return;
    }
    refuse(error, ticket);
  }
}

function thank(level) {
  clearInterval(tickTimer);
  pad.shown = null;
  $("#thanks-level").textContent = t("thanks.level", { name: levelName(level) });
  show("thanks");
  restTimer = setTimeout(rest, THANKS_MS);
}

function refuse(error, ticket) {
  clearInterval(tickTimer);
  pad.shown = null;
  pad.refusal = { status: error.status, detail: error.detail,
                  reason: error.body && error.body.reason, number: ticket.number };
  renderRefusal();
  show("refused");
  restTimer = setTimeout(rest, REFUSED_MS);
}

// The daemon says why in Chinese; in English the pad says it in its own words, by
// the refusal's `reason` (the daemon's words for one it does not know).
function renderRefusal() {
  const r = pad.refusal;
  if (!r) return;
  const key = `why.${r.reason}`;
  const english = lang === "en" && r.reason
    ? t(key, { number: r.number, s: (pad.window && pad.window.within_s) || "" }) : key;
  $("#refused-why").textContent = english !== key ? english : r.detail;
}

// ---------------------------------------------------------------- what to show

// GET /windows/{w}/rating: the ticket to ask about, if any.
async function load() {
  let answer;
  try {
    answer = await api("GET", path, { token: bearer });
  } catch (error) {
    if (error.status === 401 || error.status === 403) needToken(error);
    else if (error.status === 404) pick(t("pick.unknown", { w: windowId }));
    return;                          // unreachable: the stream's mark says so; onLive reloads
  }
  pad.window = answer;
  buildButtons();
  renderTitle();
  if (pad.screen === "thanks" || pad.screen === "refused" || pad.sending) return;   // rest() reloads
  if (answer.ticket) {
    if (!pad.shown || pad.shown.ticket.id !== answer.ticket.id || pad.screen !== "rate") {
      ask(answer.ticket, answer.remaining_s);
    }
  } else if (pad.screen !== "idle") {
    rest({ askAgain: false });     // rated elsewhere, or the time is over
  }
}

const refresh = coalesce(load, { gapMs: 200 });

// ---------------------------------------------------------------- the token, the window

function needToken(error) {
  clearInterval(tickTimer);
  clearTimeout(restTimer);
  pad.shown = null;
  pad.sending = false;
  for (const id of ["picker", "idle", "rate", "thanks", "refused"]) $(`#${id}`).hidden = true;
  pad.screen = "token";
  askToken(error);
}

async function pick(why = "") {
  show("picker");
  $("#pick-why").textContent = why;
  $("#pick-why").hidden = !why;
  let windows = [];
  try { windows = await api("GET", "/windows"); } catch { return; }
  $("#windows").replaceChildren(...windows.map((w) => el("li", {},
    el("a", { href: `/ui/rate?window=${encodeURIComponent(w.id)}` }, w.name))));
}

// May this token rate here? Asked before anything shows, so that a citizen never
// meets the token form after a tap.
async function start() {
  if (pad.name === null) {
    api("GET", `/windows/${encodeURIComponent(windowId)}`)
      .then((w) => { pad.name = w.name; renderTitle(); }).catch(() => {});
  }
  try {
    await api("GET", `${path}/access`, { token: bearer });
  } catch (error) {
    if (error.status === 401 || error.status === 403) { needToken(error); return; }
    if (error.status === 404) { pick(t("pick.unknown", { w: windowId })); return; }
    setTimeout(start, 3000);        // the daemon is not answering yet
    return;
  }
  show("idle");
  renderTitle();
  if (stream === null) stream = follow({ onEvent: heard, onLive, onLost });
  refresh();
}

function heard(event) {
  const d = event.data || {};
  if (d.window !== windowId) return;
  if (event.type === "ticket.done" && !d.reason) refresh();
  // Rated elsewhere (a supervisor, another device): the pad rests.
  if (event.type === "ticket.rated" && pad.shown && pad.shown.ticket.id === d.ticket && !pad.sending) {
    rest({ askAgain: false });
  }
}

function onLive() {
  setLink(true);
  refresh();
}

function onLost() { setLink(false); }

function setLink(live) {
  const mark = $("#link");
  mark.textContent = live ? "" : t("link.lost");
  mark.classList.toggle("lost", !live);
}

// ---------------------------------------------------------------- start

async function loadNames() {
  try {
    for (const s of await api("GET", "/services")) if (s.name_en) namesEn.set(s.id, s.name_en);
    renderService();
  } catch { /* the Chinese names serve */ }
}

async function loadHall() {
  try { $("#hall").textContent = (await api("GET", "/hall")).name; } catch { /* optional */ }
}

langButton($("#lang"), () => {
  renderTitle();
  renderLevels();
  renderService();
  renderRefusal();
  explainToken();
  if (pad.shown) tick();
  if ($("#thanks").hidden === false && pad.chosen) {
    $("#thanks-level").textContent = t("thanks.level", { name: levelName(pad.chosen) });
  }
  if (stream && !stream.live) setLink(false);
});

onTokenSubmit(ROLE, (given) => { bearer = given; start(); });

translate();
renderTitle();
loadHall();
loadNames();
if (windowId) start(); else pick();

// For a technician's console (and the tests): what the pad holds.
window.kioskdRate = {
  get state() { return { screen: pad.screen, posts: pad.posts, shown: pad.shown && pad.shown.ticket.id }; },
  get stream() { return stream; },
};
