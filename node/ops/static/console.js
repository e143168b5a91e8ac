// mq9 console: the cluster, the mailboxes, a mailbox's messages (live) and the approval inbox.
// Reads the monitoring endpoints (/raftz, /healthz, /mailboxz); watches a mailbox over
// Server-Sent Events and answers approval requests through /console/api (see console.py).
// Every value from the broker is put on the page as text (textContent), never as HTML.
"use strict";

const view = document.getElementById("view");
let timer = null;
let source = null;
let me = { auth_required: false, user: "console" };  // who the console acts as (/console/api/session)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { status.textContent = ""; }, 4000);
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  return { status: response.status, body };
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "never";
}

function table(headers, rows) {
  return el("div", { class: "table-wrap" },
    el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows)));
}

function mailboxLink(id) {
  return el("a", { href: "#/mailbox/" + encodeURIComponent(id) }, id);
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
  if (source) source.close();
  source = null;
}

// ---- the cluster -------------------------------------------------------------------------

async function showCluster() {
  const root = el("section", {}, el("h1", {}, "Cluster"), el("p", { id: "leader-line" }, "…"), el("div", { id: "nodes" }));
  view.replaceChildren(root);
  const draw = async () => {
    const [{ body: raft }, { status: health, body: healthBody }] = await Promise.all([getJSON("/raftz"), getJSON("/healthz")]);
    document.getElementById("node-name").textContent = "node " + raft.name;
    const leaderName = raft.leader_name || raft.leader || "none";
    document.getElementById("leader-line").replaceChildren(
      "Leader: ", el("strong", { id: "leader-name" }, leaderName), " · term " + raft.term + " · commit " + raft.commit_index);
    const self = el("tr", { "data-node": raft.name },
      el("td", {}, raft.name, el("span", { class: "muted" }, " (this node)")),
      el("td", { class: raft.role === "leader" ? "role-leader" : "" }, raft.role),
      el("td", {}, raft.raft), el("td", {}, raft.client_url),
      el("td", { class: health === 200 ? "ok" : "bad" }, health === 200 ? "healthy" : "unavailable: " + healthBody.error),
      el("td", {}, raft.role === "leader" ? "0" : String(raft.apply_lag) + " to apply"));
    const peers = raft.peers.map((p) => el("tr", { "data-node": p.name || p.raft },
      el("td", {}, p.name || p.raft),
      el("td", { class: p.role === "leader" ? "role-leader" : "" }, p.role),
      el("td", {}, p.raft), el("td", {}, p.client_url),
      el("td", { class: p.connected ? "ok" : "bad" }, p.connected ? "reachable" : "unreachable"),
      el("td", {}, p.lag === null ? "—" : String(p.lag))));
    document.getElementById("nodes").replaceChildren(
      table(["Node", "Role", "Raft", "Clients", "Health", "Lag (entries)"], [self, ...peers]));
  };
  await draw().catch((e) => say("cluster: " + e));
  timer = setInterval(() => draw().catch((e) => say("cluster: " + e)), 2000);
}

// ---- the mailboxes -----------------------------------------------------------------------

async function showMailboxes() {
  const input = el("input", { type: "search", id: "search", placeholder: "part of a name or mail id", "aria-label": "Search mailboxes by name" });
  const publicOnly = el("input", { type: "checkbox", id: "public-only" });
  const list = el("div", { id: "mailbox-list" });
  view.replaceChildren(el("section", {}, el("h1", {}, "Mailboxes"),
    el("div", { class: "search" }, el("label", { for: "search" }, "Search by name"), input,
      el("label", {}, publicOnly, " public only")),
    el("p", { id: "totals", class: "muted" }), list));
  const draw = async () => {
    const query = new URLSearchParams({ limit: "200" });
    if (input.value.trim()) query.set("search", input.value.trim());
    if (publicOnly.checked) query.set("public", "1");
    const { body } = await getJSON("/mailboxz?" + query);
    document.getElementById("totals").textContent =
      `${body.total_mailboxes} mailboxes, ${body.total_messages} messages, ${body.total_bytes} bytes stored (counted ${new Date(body.census_at).toLocaleTimeString()}); ${body.matched} match`;
    list.replaceChildren(table(["Mailbox", "Name", "Public", "Messages", "Bytes", "Groups", "Expires"],
      body.mailboxes.map((m) => el("tr", {},
        el("td", {}, mailboxLink(m.mail_id)), el("td", {}, m.name || ""), el("td", {}, m.public ? "yes" : "no"),
        el("td", {}, String(m.total)), el("td", {}, String(m.bytes)), el("td", {}, String(m.groups)),
        el("td", {}, when(m.expires_at))))));
  };
  input.addEventListener("input", () => draw().catch((e) => say("mailboxes: " + e)));
  publicOnly.addEventListener("change", () => draw().catch((e) => say("mailboxes: " + e)));
  await draw().catch((e) => say("mailboxes: " + e));
  timer = setInterval(() => { if (document.activeElement !== input) draw().catch(() => {}); }, 3000);
}

// ---- one mailbox: its messages, live, and the approval inbox ------------------------------

function approvalOf(text) {
  if (text === null) return null;
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" && typeof value.reply_to === "string" && value.reply_to ? value : null;
  } catch (e) {
    return null;
  }
}

function pretty(text) {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null ? JSON.stringify(value, null, 2) : text;
  } catch (e) {
    return text;
  }
}

async function answer(card, mailId, message, approved) {
  const word = approved ? "Approve" : "Reject";
  if (!window.confirm(`${word} request ${message.msg_id}?`)) return;
  for (const button of card.querySelectorAll("button")) button.disabled = true;
  const response = await fetch("/console/api/answer", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ mail_id: mailId, msg_id: message.msg_id, ack: message.ack,
      reply_to: approvalOf(message.payload).reply_to, approved }),
  });
  const body = await response.json().catch(() => ({ error: "no answer" }));
  if (response.ok) {
    card.classList.add("answered");
    card.querySelector(".actions").replaceChildren(el("span", { class: "ok" },
      `${approved ? "Approved" : "Rejected"}: answer sent (msg ${body.sent})`));
    say(`${approved ? "Approved" : "Rejected"} ${message.msg_id}`);
  } else {
    for (const button of card.querySelectorAll("button")) button.disabled = false;
    say(`${word} failed: ${body.error}`);
  }
}

function messageCard(mailId, message) {
  const request = approvalOf(message.payload);
  const payload = message.payload === null ? "(binary, base64) " + message.payload_b64 : pretty(message.payload);
  const card = el("article", { class: "msg" + (request ? " approval" : ""), "data-msg-id": message.msg_id },
    el("div", { class: "msg-head" },
      el("span", {}, "msg ", el("strong", {}, message.msg_id)),
      el("span", { class: "prio-" + message.priority }, message.priority),
      el("span", {}, when(message.ts)),
      el("span", {}, message.size + " bytes"),
      message.delivery > 1 ? el("span", {}, "delivery " + message.delivery) : null,
      request ? el("span", { class: "ok" }, "approval request → " + request.reply_to) : null),
    el("pre", {}, payload));
  if (request) {
    card.append(el("div", { class: "actions" },
      el("button", { class: "approve", type: "button", onclick: () => answer(card, mailId, message, true) }, "Approve"),
      el("button", { class: "reject", type: "button", onclick: () => answer(card, mailId, message, false) }, "Reject")));
  }
  return card;
}

async function showMailbox(mailId) {
  const messages = el("div", { id: "messages" });
  view.replaceChildren(el("section", {},
    el("p", {}, el("a", { href: "#/mailboxes" }, "← Mailboxes")),
    el("h1", {}, "Mailbox ", mailId), el("div", { id: "mailbox-info", class: "counts muted" }),
    el("h2", {}, "Messages ", el("span", { class: "muted", id: "live" }, "(connecting…)")), messages));
  const info = async () => {
    const { body } = await getJSON("/mailboxz?mail_id=" + encodeURIComponent(mailId));
    const box = body.mailboxes[0];
    const target = document.getElementById("mailbox-info");
    if (!target) return;
    target.replaceChildren(...(box ? [
      el("span", {}, box.public ? "public" : "private"), el("span", {}, box.name ? "name " + box.name : ""),
      el("span", {}, `${box.total} stored (critical ${box.messages.critical}, urgent ${box.messages.urgent}, normal ${box.messages.normal}, low ${box.messages.low})`),
      el("span", {}, `${box.groups} groups, ${box.in_flight} in flight`), el("span", {}, "expires " + when(box.expires_at)),
    ] : [el("span", { class: "bad" }, "no such mailbox (yet): messages appear once it is created")]));
  };
  await info().catch(() => {});
  timer = setInterval(() => info().catch(() => {}), 3000);
  source = new EventSource("/console/api/mailbox/" + encodeURIComponent(mailId) + "/stream");
  source.addEventListener("open", () => { document.getElementById("live").textContent = "(live)"; });
  source.addEventListener("error", () => { const live = document.getElementById("live"); if (live) live.textContent = "(reconnecting…)"; });
  source.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (messages.querySelector(`[data-msg-id="${CSS.escape(message.msg_id)}"]`)) return;
    messages.append(messageCard(mailId, message));
  });
}

// ---- logging in (when the node requires credentials) ------------------------------------

function showWho() {
  const who = document.getElementById("who");
  if (!me.auth_required) { who.replaceChildren(); return; }
  who.replaceChildren(me.user ? "signed in as " + me.user + " " : "",
    me.user ? el("button", { type: "button", id: "logout", onclick: logout }, "Log out") : "");
}

async function logout() {
  await fetch("/console/api/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  me.user = null;
  showWho();
  route();
}

function showLogin() {
  const user = el("input", { id: "login-user", autocomplete: "username" });
  const password = el("input", { id: "login-password", type: "password", autocomplete: "current-password" });
  const error = el("p", { id: "login-error", class: "bad", role: "alert" });
  const form = el("form", { class: "login" },
    el("p", {}, "This node requires credentials: log in as you would connect an agent (a token goes in the password field, with no user)."),
    el("label", { for: "login-user" }, "User"), user,
    el("label", { for: "login-password" }, "Password or token"), password,
    el("button", { type: "submit", class: "approve" }, "Log in"), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/console/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: user.value, password: password.value }) });
    const body = await response.json().catch(() => ({ error: "no answer" }));
    if (!response.ok) { error.textContent = body.error; return; }
    me.user = body.user;
    showWho();
    route();
  });
  view.replaceChildren(el("section", {}, el("h1", {}, "Log in"), form));
  user.focus();
}

// ---- routing -----------------------------------------------------------------------------

function route() {
  stop();
  if (me.auth_required && !me.user) { showLogin(); return; }
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  for (const link of document.querySelectorAll("nav a")) link.removeAttribute("aria-current");
  if (hash.startsWith("/mailbox/")) {
    document.getElementById("nav-mailboxes").setAttribute("aria-current", "page");
    showMailbox(hash.slice("/mailbox/".length));
  } else if (hash === "/mailboxes") {
    document.getElementById("nav-mailboxes").setAttribute("aria-current", "page");
    showMailboxes();
  } else {
    document.getElementById("nav-cluster").setAttribute("aria-current", "page");
    showCluster();
  }
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
getJSON("/console/api/session").then(({ body }) => { me = body; showWho(); route(); })
  .catch(() => route());
