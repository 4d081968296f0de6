// ticket.js — the page a ticket's QR code opens on the citizen's phone: the number,
// the service, and where it stands (people ahead and the wait, or the window to go
// to), kept current from the hall's event stream, with polling as a fallback.

import { $, api, inHall, clockTime, follow, lang, now, setLang, syncClock, t, translate, words } from "./kioskd.js";

words({
  zh: {
    title: "排队进度",
    loading: "正在查询…",
    unknown_title: "没有找到这张号票",
    unknown_text: "请检查二维码是否完整，或重新扫描号票上的二维码；号码只在取号当天有效。如有疑问，请到服务台咨询。",
    your_number: "您的号码",
    priority: "优先号",
    ahead: "前面还有",
    ahead_n: "{n} 人",
    est_wait: "预计等待",
    wait_about: "约 {n} 分钟",
    wait_soon: "马上就到",
    wait_unknown: "窗口暂未开放",
    waiting: "等待中",
    waiting_detail: "请在大厅等候，留意叫号",
    waiting_transferred: "已转到 {window}，请等候叫号",
    called: "请到 {window} 办理",
    called_detail: "正在叫您的号，请马上过去",
    serving: "正在办理",
    serving_detail: "在 {window}",
    done: "已办结",
    done_detail: "感谢您的耐心等候",
    no_show: "已过号",
    no_show_detail: "叫号时您不在。请到服务台或窗口咨询能否重新排队。",
    cancelled: "已取消",
    cancelled_detail: "这张号票已取消。如需办理，请重新取号。",
    issued: "取号时间 {time}",
    updated: "更新于 {time}",
    offline: "暂时连不上大厅系统，正在重试…",
    note: "请留意大厅的叫号广播和显示屏。本页自动更新，无需刷新。",
  },
  en: {
    title: "Your place in the queue",
    loading: "Looking it up…",
    unknown_title: "This ticket was not found",
    unknown_text: "Check that the QR code is complete, or scan the code on your ticket again; a number is valid on the day it was taken only. If in doubt, ask at the service desk.",
    your_number: "Your number",
    priority: "Priority",
    ahead: "People ahead",
    ahead_n: "{n}",
    est_wait: "Estimated wait",
    wait_about: "about {n} min",
    wait_soon: "very soon",
    wait_unknown: "no window open yet",
    waiting: "Waiting",
    waiting_detail: "Please wait in the hall and listen for your number",
    waiting_transferred: "Moved to {window}; please wait to be called",
    called: "Please go to {window}",
    called_detail: "Your number is being called: please go now",
    serving: "Being served",
    serving_detail: "at {window}",
    done: "Done",
    done_detail: "Thank you for waiting",
    no_show: "Missed",
    no_show_detail: "You were not there when called. Ask at the service desk or a window whether you may queue again.",
    cancelled: "Cancelled",
    cancelled_detail: "This ticket was cancelled. Take a new number if you still need the service.",
    issued: "Taken at {time}",
    updated: "Updated {time}",
    offline: "Cannot reach the hall right now; trying again…",
    note: "Listen for the announcements and watch the hall's screens. This page updates by itself.",
  },
});

const ticketId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
let ticket = null;
let hall = null;
let services = new Map();
let problem = false;
let updatedAt = null;

function render() {
  translate();
  $("#lang").textContent = lang === "en" ? "中文" : "English";
  $("#lang").lang = lang === "en" ? "zh-CN" : "en";
  $("#hall-name").textContent = hall ? hall.name : "";
  document.title = ticket ? `${ticket.number} · ${t("title")}` : t("title");
  $("#updated").textContent = problem ? t("offline")
                            : updatedAt ? t("updated", { time: inHall(updatedAt).seconds }) : "";
  $("#updated").classList.toggle("problem", problem);
  if (!ticket) return;
  const s = services.get(ticket.service);
  $("#loading").hidden = true;
  $("#ticket").hidden = false;
  $("#number").textContent = ticket.number;
  $("#service").textContent = (lang === "en" && s && s.name_en) ? s.name_en : ticket.service_name;
  $("#priority").hidden = !ticket.priority;
  const window = ticket.window_name || ticket.window || "";
  const status = ticket.status;
  let word = t(status), detail = t(`${status}_detail`, { window });
  if (status === "called") word = t("called", { window });
  if (status === "waiting" && ticket.target_window) {
    detail = t("waiting_transferred", { window: ticket.target_window_name || ticket.target_window });
  }
  $("#status-word").textContent = word;
  $("#status-detail").textContent = detail;
  $("#ticket").dataset.status = status;
  $("#waiting-facts").hidden = status !== "waiting";
  const ahead = ticket.waiting_ahead ?? 0;
  $("#ahead").textContent = t("ahead_n", { n: ahead });
  $("#wait").textContent = !ahead ? t("wait_soon")
    : ticket.est_wait_min === null || ticket.est_wait_min === undefined ? t("wait_unknown")
    : t("wait_about", { n: ticket.est_wait_min });
  $("#issued").textContent = t("issued", { time: clockTime(ticket.issued_at) });
}

async function load() {
  try {
    ticket = await api("GET", `/tickets/${encodeURIComponent(ticketId)}`);
    problem = false;
    updatedAt = now();
    document.body.dataset.ready = "1";
  } catch (error) {
    if (error.status === 404 || error.status === 422) {
      $("#loading").hidden = true;
      $("#ticket").hidden = true;
      $("#unknown").hidden = false;
      document.body.dataset.ready = "1";
      stop();
      return;
    }
    problem = true;
  }
  render();
}


async function loadHall() {
  try {
    const [h, list] = await Promise.all([syncClock(), api("GET", "/services")]);
    hall = h;
    services = new Map(list.map((s) => [s.id, s]));
    render();
  } catch {
    setTimeout(loadHall, 10000);
  }
}

let soon = null;
let lastLoad = 0;

function loadSoon(now = false) {
  if (soon !== null) { if (!now) return; clearTimeout(soon); }
  const wait = now ? 0 : Math.max(0, lastLoad + 2000 - Date.now());
  soon = setTimeout(() => { soon = null; lastLoad = Date.now(); load(); }, wait);
}

let stream = null;
let poll = null;

function stop() {
  if (stream) stream.close();
  clearInterval(poll);
}

function start() {
  $("#lang").addEventListener("click", () => { setLang(lang === "zh" ? "en" : "zh"); render(); });
  render();
  if (!ticketId) { $("#loading").hidden = true; $("#unknown").hidden = false; return; }
  loadHall();
  lastLoad = Date.now();
  load();
  stream = follow({
    onEvent(event) {
      if (!event.type.startsWith("ticket.")) return;
      loadSoon(event.data && event.data.ticket === ticketId);   // ours: at once; others: may move us up
    },
    onLive: (first) => { if (!first) loadSoon(true); },
    onLost: () => { problem = true; render(); },
  });
  poll = setInterval(() => loadSoon(), 15000);      // whatever the stream does
}

start();
