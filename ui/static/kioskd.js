// kioskd.js — what every hall page shares: the API with its token, the live event
// stream that reconnects by itself, Chinese/English words, and small DOM helpers.
// Pages import it as an ES module; nothing here loads anything from outside the hall.

export const API = "/api/v1";
export const params = new URLSearchParams(location.search);

// ---------------------------------------------------------------- tokens
// A page is opened with its token in the address's fragment (never sent to a
// server or written in its logs): /ui/window?window=3#token=SECRET. The page keeps
// it in localStorage under its role, so a reload or a restarted browser keeps
// working, and takes it out of the address bar.

const TOKEN_KEY = (role) => `kioskd.token.${role}`;

export function token(role) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token");
  if (given !== null) {
    setToken(role, given);
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return localStorage.getItem(TOKEN_KEY(role)) || "";
}

export function setToken(role, value) {
  if (value) localStorage.setItem(TOKEN_KEY(role), value);
  else localStorage.removeItem(TOKEN_KEY(role));
}

// A staff page's token form (<form id="token-form"> holding #token-why and
// #token-input), shown when the daemon answers 401 or 403: 403 quotes its reason
// (the words "token.wrong" with {detail}), 401 says a token is needed ("token.missing").
export function askToken(error) {
  const form = $("#token-form");
  form.hidden = false;
  form.dataset.status = String(error.status);
  form.dataset.detail = error.detail;
  explainToken();
  $("#token-input").focus();
}

// The form's submit: keep the token typed for `role`, then `then(token)`.
export function onTokenSubmit(role, then) {
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const given = $("#token-input").value.trim();
    setToken(role, given);
    $("#token-input").value = "";
    then(given);
  });
}

// The form's reason again, in the language now chosen.
export function explainToken() {
  const form = $("#token-form");
  if (!form || !form.dataset.status) return;
  $("#token-why").textContent = form.dataset.status === "403"
    ? t("token.wrong", { detail: form.dataset.detail || "" }) : t("token.missing");
}

// ---------------------------------------------------------------- the API

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;       // 0: the daemon did not answer (network, timeout)
    this.detail = detail;
    this.body = body;
  }
}

// One request to the daemon: the 2xx response, or an ApiError carrying the daemon's
// own `detail` (status 0 when it did not answer in `timeoutMs`).
async function request(method, path, { body, token: bearer, timeoutMs = 8000 } = {}) {
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs), cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, error.name === "TimeoutError" ? "timeout" : "unreachable", null);
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const detail = (data && typeof data.detail === "string") ? data.detail : `HTTP ${response.status}`;
    throw new ApiError(response.status, detail, data);
  }
  return response;
}

// api("POST", "/windows/3/call-next", {token}) → the JSON answer (null for 204).
export async function api(method, path, options = {}) {
  const response = await request(method, path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json().catch(() => null) : null;
}

// A binary answer (a ticket's PNG, an announcement's WAV) as an object URL, for
// routes that need a token and so cannot be an <img src>. Revoke it when replaced.
export async function blobUrl(path, options = {}) {
  const response = await request("GET", path, options);
  return URL.createObjectURL(await response.blob());
}

// ---------------------------------------------------------------- live events
// follow({onEvent, onLive, onLost}) reads /api/v1/events and keeps reading for
// weeks: the browser's EventSource reconnects by itself with Last-Event-ID after
// a dropped connection; when it gives up (the daemon answered an error while it
// restarted) we open a new one with ?since=<last id>, backing off to 10 s. Either
// way the daemon first sends every event missed, so the page catches up.
// onLive(first) runs each time the stream is (re)connected: a page refetches its
// snapshot there. Returns {close(), get lastId(), get live()}.

export function follow({ onEvent, onLive = () => {}, onLost = () => {}, since = null }) {
  let source = null;
  let lastId = since;
  let live = false;
  let opened = 0;
  let retry = null;
  let backoff = 1000;
  let closed = false;

  function open() {
    retry = null;
    const url = API + "/events" + (lastId !== null ? `?since=${lastId}` : "");
    source = new EventSource(url);
    source.onopen = () => {
      live = true;
      backoff = 1000;
      onLive(opened++ === 0);
    };
    source.onerror = () => {
      if (live) { live = false; onLost(); }
      if (source.readyState === EventSource.CLOSED && !closed) {
        source = null;
        retry = setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 10000);
      }
    };
    source.onmessage = handle;              // events without a type (none today)
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
  }

  function handle(message) {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const id = Number(message.lastEventId || event.id);
    if (lastId !== null && id <= lastId) return;   // seen already (a resumed stream)
    lastId = id;
    onEvent(event);
  }

  open();
  return {
    close() { closed = true; clearTimeout(retry); if (source) source.close(); },
    get lastId() { return lastId; },
    get live() { return live; },
  };
}

export const EVENT_TYPES = [
  "ticket.issued", "ticket.called", "ticket.recalled", "ticket.started", "ticket.done",
  "ticket.no_show", "ticket.transferred", "ticket.cancelled", "ticket.readmitted",
  "ticket.printed", "ticket.rated", "appointment.registered", "appointment.cancelled",
  "appointment.checked_in",
  "window.changed", "device.changed", "alert", "announcement.dropped",
];

// ---------------------------------------------------------------- words
// Chinese first. A page adds its words with words({zh: {...}, en: {...}}); t(key,
// vars) looks one up in the current language ("{n}" filled from vars), and every
// element with data-t="key" is translated by translate(). The choice is kept per
// page in localStorage; <html lang> follows it.

const dictionaries = { zh: {}, en: {} };
// per page, not per address: every /ui/ticket/{id} shares the ticket page's choice
const LANG_KEY = `kioskd.lang.${location.pathname.split("/")[2] || "ui"}`;
export let lang = params.get("lang") || localStorage.getItem(LANG_KEY) || "zh";
if (!(lang in dictionaries)) lang = "zh";

export function words(more) {
  for (const [code, entries] of Object.entries(more)) Object.assign(dictionaries[code] ||= {}, entries);
}

export function t(key, vars = {}) {
  const text = dictionaries[lang][key] ?? dictionaries.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

export function setLang(code, { remember = true } = {}) {
  lang = code in dictionaries ? code : "zh";
  if (remember) localStorage.setItem(LANG_KEY, lang);
  translate();
}

// The 中文/English button: it names the other language, in that language; a press
// switches, translates the data-t texts, then calls `then()` for the rest.
export function langButton(button, then = () => {}) {
  const label = () => {
    button.textContent = lang === "zh" ? "English" : "中文";
    button.lang = lang === "zh" ? "en" : "zh-CN";
  };
  label();
  button.addEventListener("click", () => {
    setLang(lang === "zh" ? "en" : "zh");
    label();
    then();
  });
}

export function translate(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of root.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of root.querySelectorAll("[data-t-title]")) node.title = t(node.dataset.tTitle);
  for (const node of root.querySelectorAll("[data-t-label]")) node.setAttribute("aria-label", t(node.dataset.tLabel));
}

// ---------------------------------------------------------------- DOM

// el("li", {class: "call", dataset: {id: 3}, onclick: f}, "A012", child) — text is
// always set as text, never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// A short message at the bottom of the screen, replaced by the next one.
export function toast(text, kind = "ok", ms = 3000) {
  let box = $("#toast");
  if (!box) {
    box = el("div", { id: "toast", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  box.textContent = text;
  box.className = `toast ${kind} shown`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("shown"), ms);
}

// ---------------------------------------------------------------- bursts
// coalesce(work, {gapMs, delayMs}) → schedule: events come in bursts (a call moves
// a window, a line, a board and the voice); each schedule() asks for one more run of
// `work`, and a burst becomes one run: never two at once, at most one every gapMs,
// at the earliest delayMs after the first ask. A schedule() during a run makes one
// more run after it, so the last event is always read.
export function coalesce(work, { gapMs = 250, delayMs = 0 } = {}) {
  let timer = null;
  let running = false;
  let again = false;
  let last = -Infinity;

  async function run() {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try {
      await work();
    } catch (error) {
      console.error(error);        // work shows its own failures; never an unhandled rejection
    } finally {
      running = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (timer !== null) return;
    timer = setTimeout(run, Math.max(delayMs, last + gapMs - Date.now()));
  }
  return schedule;
}

// ---------------------------------------------------------------- time
// The daemon's clock is the hall's clock: pages correct for a PC whose clock is off
// with the offset measured from GET /api/v1/hall (see syncClock).

let clockOffsetMs = 0;
let hallZone;            // the hall's time zone (GET /hall); the PC's own until it is known

export async function syncClock() {
  const before = Date.now();
  const hall = await api("GET", "/hall");
  const after = Date.now();
  clockOffsetMs = Date.parse(hall.now) - (before + after) / 2;
  if (hall.timezone !== hallZone) { hallZone = hall.timezone; hallFormat = null; }
  return hall;
}

export const now = () => Date.now() + clockOffsetMs;

// A moment (ms since 1970; default now, by the daemon's clock) in the hall's time
// zone, whatever the PC's: {date: "2026-11-30", hour: 9, time: "09:41", seconds: "09:41:07"}.
let hallFormat = null;
export function inHall(ms = now()) {
  if (hallFormat === null) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                      minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    try {
      hallFormat = new Intl.DateTimeFormat("en-GB", { ...options, timeZone: hallZone });
    } catch {                                   // a zone this browser does not know
      hallFormat = new Intl.DateTimeFormat("en-GB", options);
    }
  }
  const part = Object.fromEntries(hallFormat.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const time = `${part.hour}:${part.minute}`;
  return { date: `${part.year}-${part.month}-${part.day}`, hour: Number(part.hour), time,
           seconds: `${time}:${part.second}` };
}

export function minutesSince(iso) {
  return iso ? Math.max(0, Math.floor((now() - Date.parse(iso)) / 60000)) : null;
}

// "09:41" in the hall's time: the ISO strings carry the hall's offset.
export function clockTime(iso) {
  return iso ? iso.slice(11, 16) : "";
}

export function elapsed(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, Math.floor((now() - Date.parse(iso)) / 1000));
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}
