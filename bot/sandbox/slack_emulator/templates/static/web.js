// The emulator's web view: polls /web/state for the panes' HTML (rendered and escaped on the
// server) and turns clicks, menus, forms and the composers into POSTs to /web/*, which the
// server delivers to the bot signed, as Slack would. Notices are set as text, never as HTML.
"use strict";

const POLL_MS = 700;
const view = { viewer: document.body.dataset.viewer, channel: "C0OPSBOT", thread: null, threadChosen: false,
               version: "", modalKey: null, busy: false };

function byId(id) { return document.getElementById(id); }

function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }

function replace(el, html) {
  if (el.dataset.html === html) return;
  const stick = el.dataset.html === undefined || atBottom(el);
  el.innerHTML = html;
  el.dataset.html = html;
  if (stick) el.scrollTop = el.scrollHeight;
}

function notices(lines, local) {
  const list = byId("notices");
  list.textContent = "";
  for (const line of (local ? [local] : []).concat(lines || [])) {
    const item = document.createElement("li");
    item.textContent = line;
    list.appendChild(item);
  }
}

let localNotice = null;

async function refresh(force) {
  const query = new URLSearchParams({ viewer: view.viewer, channel: view.channel, since: force ? "" : view.version });
  if (view.threadChosen) query.set("thread", view.thread || "-");
  let data;
  try {
    const response = await fetch("/web/state?" + query.toString(), { cache: "no-store" });
    if (!response.ok) return;
    data = await response.json();
  } catch (error) {
    byId("connection").textContent = "emulator unreachable";
    return;
  }
  if (data.same) return;
  view.version = data.version;
  if (!view.threadChosen) view.thread = data.thread;
  byId("connection").textContent = data.connected ? "opsbot connected" : "waiting for opsbot…";
  byId("channel-title").textContent = data.channel_title;
  for (const button of document.querySelectorAll("[data-kind=channel]")) {
    button.classList.toggle("active", button.dataset.channel === view.channel);
  }
  replace(byId("channel-feed"), data.channel_html);
  const pane = byId("thread-pane");
  pane.hidden = !data.thread_html;
  replace(byId("thread-feed"), data.thread_html || "");
  const modal = byId("modal");
  const key = data.modal ? data.modal.key : null;
  if (key !== view.modalKey) {
    modal.innerHTML = data.modal ? data.modal.html : "";
    view.modalKey = key;
  }
  notices(data.notices, localNotice);
}

async function post(path, body) {
  try {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ viewer: view.viewer, channel: view.channel }, body)),
    });
    let data = {};
    try { data = await response.json(); } catch (error) { data = {}; }
    localNotice = (!response.ok || data.ok === false) ? (data.error || "HTTP " + response.status) : null;
    return data;
  } finally {
    await refresh(true);
    // a click the bot answered without changing the message leaves the same HTML: enable it again
    for (const button of document.querySelectorAll("button[data-kind=click][disabled]")) button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-kind]");
  if (!target) return;
  const kind = target.dataset.kind;
  if (kind === "click") {
    if (target.dataset.confirm && !window.confirm(target.dataset.confirm)) return;
    target.disabled = true;
    post("/web/click", { ts: target.dataset.ts, block_id: target.dataset.block, action_id: target.dataset.action });
  } else if (kind === "open-thread") {
    view.thread = target.dataset.thread; view.threadChosen = true; refresh(true);
  } else if (kind === "close-thread") {
    view.thread = null; view.threadChosen = true; byId("thread-pane").hidden = true;
  } else if (kind === "channel") {
    view.channel = target.dataset.channel; view.thread = null; view.threadChosen = false; refresh(true);
  } else if (kind === "view-close") {
    const form = target.closest("form");
    post("/web/view/close", { view_id: form.dataset.view });
  }
});

document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.id === "viewer") {
    view.viewer = target.value; view.modalKey = null; refresh(true);
  } else if (target.dataset && target.dataset.kind === "select" && target.value) {
    post("/web/click", { ts: target.dataset.ts, block_id: target.dataset.block, action_id: target.dataset.action,
                         choice: target.value });
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  event.preventDefault();
  if (form.dataset.kind === "compose") {
    const input = form.querySelector("input[name=text]");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    post("/web/message", { text: text, thread_ts: form.dataset.inThread ? view.thread : null });
  } else if (form.dataset.kind === "view") {
    const values = {};
    for (const [name, value] of new FormData(form).entries()) values[name] = value;
    post("/web/view", { view_id: form.dataset.view, values: values });
  }
});

const fire = byId("fire");
if (fire) {
  fire.addEventListener("click", () => post("/web/scenario", { scenario: byId("scenario").value }));
}

refresh(true);
setInterval(() => { if (!document.hidden) refresh(false); }, POLL_MS);
