// display.js — the hall's TV: who is called to which window now, the latest calls
// with the newest one flashing, and how many wait for each service. It runs for weeks
// unattended, so it holds a fixed number of rows (reused, never appended), keeps no
// growing list, and reconnects by itself: kioskd.js follow() resumes the event
// stream, and each reconnection refetches the snapshot (/queue, /calls).
// Address: /ui/display, optionally ?flash=SECONDS (how long a new call flashes)
// and ?lang=en.

import {
  $, inHall, api, clockTime, coalesce, el, follow, lang, langButton, now, params, syncClock, t, translate,
  words,
} from "./kioskd.js";

words({
  zh: {
    now: "正在呼叫", "now.none": "暂无呼叫", latest: "最新叫号", queue: "各事项等候人数",
    to: "请到", recalled: "重呼", serving: "办理中", people: "人",
    lost: "连接中断，正在重连…", "waiting.label": "{service}：等候 {n} 人",
  },
  en: {
    now: "Now calling", "now.none": "No calls right now", latest: "Latest calls",
    queue: "Waiting per service", to: "to", recalled: "again", serving: "serving", people: "",
    lost: "Connection lost, reconnecting…", "waiting.label": "{service}: {n} waiting",
  },
});

const CALL_ROWS = 8;             // the latest calls: this many rows, made once
const NOW_CARDS = 8;             // windows calling now: this many cards, made once
// A new call stands out this long: 10 s, or ?flash=SECONDS in the address (1–60).
const FRESH_MS = 1000 * Math.min(60, Math.max(1, Number(params.get("flash")) || 10));
const SNAPSHOT_GAP_MS = 400;     // a burst of events: at most ~2.5 refetches a second

let hall = null;
let calls = [];                  // ≤ CALL_ROWS: {ticket, number, window_name, at, event_id, recalled, fresh}
let lastQueue = null;
let freshTimer = null;
let stream = null;

// ---------------------------------------------------------------- the fixed rows

const nowCards = [];
const callRows = [];

function buildRows() {
  const nowList = $("#now-list");
  for (let i = 0; i < NOW_CARDS; i++) {
    const card = {
      node: el("li", { class: "now-card", hidden: true }),
      number: el("span", { class: "now-number" }),
      arrow: el("span", { class: "now-arrow", "aria-hidden": "true" }, "→"),
      window: el("span", { class: "now-window" }),
      note: el("span", { class: "now-note" }),
    };
    card.node.append(card.number, card.arrow,
      el("span", { class: "now-place" }, card.window, card.note));
    nowList.append(card.node);
    nowCards.push(card);
  }
  const latest = $("#latest-list");
  for (let i = 0; i < CALL_ROWS; i++) {
    const row = {
      node: el("li", { class: "call empty" }),
      number: el("span", { class: "call-number" }),
      window: el("span", { class: "call-window" }),
      tag: el("span", { class: "call-tag" }),
      time: el("span", { class: "call-time" }),
    };
    row.node.append(row.number, row.window, row.tag, row.time);
    latest.append(row.node);
    callRows.push(row);
  }
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// ---------------------------------------------------------------- the latest calls

// Keep the newest call of each ticket, newest first, at most CALL_ROWS of them.
function mergeCalls(incoming) {
  const best = new Map();
  for (const call of [...calls, ...incoming]) {
    const seen = best.get(call.ticket);
    if (!seen || call.event_id > seen.event_id) best.set(call.ticket, call);
    else if (call.event_id === seen.event_id && call.fresh) seen.fresh = call.fresh;
  }
  calls = [...best.values()].sort((a, b) => b.event_id - a.event_id).slice(0, CALL_ROWS);
}

function renderCalls() {
  const clock = Date.now();
  for (let i = 0; i < CALL_ROWS; i++) {
    const row = callRows[i];
    const call = calls[i];
    if (!call) {
      row.node.className = "call empty";
      setText(row.number, ""); setText(row.window, ""); setText(row.tag, ""); setText(row.time, "");
      continue;
    }
    setText(row.number, call.number);
    setText(row.window, call.window_name || call.window || "");
    setText(row.tag, call.recalled ? t("recalled") : "");
    setText(row.time, clockTime(call.at));
    const fresh = call.fresh && call.fresh > clock;
    const wanted = `call${fresh ? " fresh" : ""}${fresh && i === 0 ? " newest" : ""}${call.recalled ? " recalled" : ""}`;
    if (row.node.className !== wanted) row.node.className = wanted;
  }
  scheduleFreshEnd();
}

// One timer: when the earliest highlight ends, draw again.
function scheduleFreshEnd() {
  clearTimeout(freshTimer);
  freshTimer = null;
  const clock = Date.now();
  const ends = calls.map((c) => c.fresh || 0).filter((end) => end > clock);
  if (!ends.length) return;
  freshTimer = setTimeout(() => { renderCalls(); renderNow(); }, Math.min(...ends) - clock + 20);
}

// A call just made: to the top, highlighted; the flash starts again even in a row
// that was flashing already.
function called(event) {
  const d = event.data;
  mergeCalls([{
    ticket: d.ticket, number: d.number, window: d.window, window_name: d.window_name,
    at: event.at, event_id: event.id, recalled: event.type === "ticket.recalled",
    fresh: Date.now() + FRESH_MS,
  }]);
  for (const node of [callRows[0].node, nowCards[0].node]) {
    node.classList.remove("newest");
    void node.offsetWidth;                // restart the animation
  }
  renderCalls();
  patchNow(d, event);
}

// ---------------------------------------------------------------- windows calling now

// Between snapshots: put the call into its window's card at once.
function patchNow(d, event) {
  if (!lastQueue) return;
  const win = lastQueue.windows.find((w) => w.id === d.window);
  if (!win) return;
  win.current = { ...(win.current || {}), id: d.ticket, number: d.number, service: d.service,
    status: "called", called_at: event.at };
  renderNow();
}

function renderNow() {
  const windows = lastQueue ? lastQueue.windows : [];
  // Newest call first: the order of the latest calls (event order, which a recall
  // renews), then the time called for the windows whose call is older than those.
  const rank = (w) => {
    const at = calls.findIndex((c) => c.ticket === w.current.id);
    return at < 0 ? CALL_ROWS : at;
  };
  const calling = windows
    .filter((w) => w.current && (w.current.status === "called" || w.current.status === "serving"))
    .sort((a, b) => rank(a) - rank(b) ||
      (b.current.called_at || "").localeCompare(a.current.called_at || ""))
    .slice(0, NOW_CARDS);
  const clock = Date.now();
  const fresh = new Set(calls.filter((c) => c.fresh > clock).map((c) => c.ticket));
  for (let i = 0; i < NOW_CARDS; i++) {
    const card = nowCards[i];
    const w = calling[i];
    card.node.hidden = !w;
    if (!w) continue;
    setText(card.number, w.current.number);
    setText(card.window, w.name);
    setText(card.note, w.current.status === "serving" ? t("serving") : "");
    const isFresh = fresh.has(w.current.id);
    const wanted = `now-card ${w.current.status}${isFresh ? " fresh" : ""}${isFresh && i === 0 ? " newest" : ""}`;
    if (card.node.className !== wanted) card.node.className = wanted;
  }
  $("#now-none").hidden = calling.length > 0;
  $("#now-list").hidden = calling.length === 0;
}

// ---------------------------------------------------------------- waiting per service

let tiles = new Map();           // service id → {node, count}: rebuilt only if the services change
let tilesKey = "";

function renderQueue() {
  if (!lastQueue) return;
  const services = lastQueue.services;
  const key = services.map((s) => s.id).join("\n") + "\n" + lang;
  if (key !== tilesKey) {
    tilesKey = key;
    tiles = new Map();
    const nodes = services.map((s) => {
      const name = el("span", { class: "q-name" }, lang === "en" && s.name_en ? s.name_en : s.name);
      const count = el("span", { class: "q-count" });
      const unit = el("span", { class: "q-unit" }, t("people"));
      const node = el("li", { class: "q-tile" }, name, el("span", { class: "q-figure" }, count, unit));
      tiles.set(s.id, { node, count });
      return node;
    });
    $("#queue-list").replaceChildren(...nodes);
  }
  for (const s of services) {
    const tile = tiles.get(s.id);
    setText(tile.count, String(s.waiting));
    tile.node.classList.toggle("zero", s.waiting === 0);
  }
}

// ---------------------------------------------------------------- snapshots

let wantCalls = false;
const snapshotSoon = coalesce(snapshot, { gapMs: SNAPSHOT_GAP_MS });

function scheduleSnapshot(withCalls = false) {
  wantCalls ||= withCalls;
  snapshotSoon();
}

async function snapshot() {
  const withCalls = wantCalls;
  wantCalls = false;
  try {
    const [queue, latest] = await Promise.all([
      api("GET", "/queue"), withCalls ? api("GET", `/calls?limit=${CALL_ROWS}`) : null]);
    lastQueue = queue;
    if (latest) {
      mergeCalls(latest.map((c) => ({
        ticket: c.ticket, number: c.number, window: c.window, window_name: c.window_name,
        at: c.at, event_id: c.event_id, recalled: c.recalled, fresh: 0,
      })));
      renderCalls();
    }
    renderNow();
    renderQueue();
  } catch {
    wantCalls ||= withCalls;              // try again when the stream is back
  }
}

// ---------------------------------------------------------------- header

let dateFormat = null;

// The date in words, in the page's language ("11月29日星期日", "Sunday 29 November").
function formats() {
  const zone = hall ? hall.timezone : undefined;
  const locale = lang === "en" ? "en-GB" : "zh-CN";
  const options = { month: "long", day: "numeric", weekday: "long" };
  try {
    dateFormat = new Intl.DateTimeFormat(locale, { ...options, timeZone: zone });
  } catch {
    dateFormat = new Intl.DateTimeFormat(locale, options);
  }
}

function tick() {
  const moment = now();
  setText($("#clock"), `${dateFormat.format(new Date(moment))}  ${inHall(moment).seconds}`);
}

function setHall(answer) {
  hall = answer;
  setText($("#hall"), hall.name);
  document.title = `${hall.name} · ${t("now")}`;
  formats();
}

function setLink(live) {
  const mark = $("#link");
  setText(mark, live ? "" : t("lost"));
  mark.classList.toggle("lost", !live);
  document.body.classList.toggle("offline", !live);
}

langButton($("#lang"), () => {
  formats();
  if (stream && !stream.live) setLink(false);
  renderCalls();
  renderNow();
  renderQueue();
  tick();
});

// ---------------------------------------------------------------- start

function refreshHall() {
  syncClock().then(setHall).catch(() => {});
}

buildRows();
translate();
formats();
tick();
setInterval(tick, 1000);
setInterval(refreshHall, 10 * 60 * 1000);
refreshHall();
scheduleSnapshot(true);

stream = follow({
  onEvent(event) {
    if (event.type === "ticket.called" || event.type === "ticket.recalled") {
      called(event);
      scheduleSnapshot();
    } else if (event.type.startsWith("ticket.") || event.type === "window.changed") {
      scheduleSnapshot();
    }
  },
  onLive(first) {
    setLink(true);
    if (!first || !hall) refreshHall();
    scheduleSnapshot(true);
  },
  onLost() { setLink(false); },
});

// For a technician's console (and the tests): the stream and what is held.
window.kioskdDisplay = {
  get stream() { return stream; },
  get held() { return { calls: calls.length, tiles: tiles.size }; },
};
