// deskbot sandbox page: three chats (a customer, the agents' group, the supervisor) drawn
// from the emulator's messages. Text arrives as segments and is put in with textContent only:
// nothing a customer or the bot writes is ever parsed as HTML here.
"use strict";

const state = {
  world: null,
  customerId: null,
  agentId: null,
  topic: "general",
  replyTo: { customer: null, group: null, supervisor: null },
  toastsSeen: new Set(),
  firstToasts: true,
};
const panes = {};
const EMPTY = {
  customer: "A chat with the bot. Try /start, ask a question, or /complaint.",
  group: "The agents' group. New conversations and complaints open a topic on the left.",
  supervisor: "The supervisor's own chat with the bot. Try /stats.",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ ok: false, error: response.statusText }));
  if (!response.ok || data.ok === false) {
    showToast(data.error || "request failed", true);
    throw new Error(data.error || response.statusText);
  }
  return data;
}

function showToast(text, alert) {
  const toast = document.getElementById("toast");
  toast.textContent = text;
  toast.className = alert ? "alert" : "";
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, alert ? 6000 : 3000);
}

// --- what each pane is ----------------------------------------------------------------------

function actorOf(role) {
  if (role === "customer") return state.customerId;
  if (role === "group") return state.agentId;
  return state.world && state.world.supervisor.id;
}

function chatOf(role) {
  if (role === "group") return state.world && state.world.group.id;
  return actorOf(role);
}

function threadOf(role) {
  return role === "group" ? state.topic : null;
}

// --- drawing messages ------------------------------------------------------------------------

function drawSegments(container, segments) {
  for (const segment of segments) {
    let node;
    if (segment.href) {
      node = el("a");
      node.href = segment.href;
      node.target = "_blank";
      node.rel = "noopener noreferrer";
    } else {
      node = el("span");
    }
    node.textContent = segment.text;
    for (const mark of segment.marks || []) node.classList.add("m-" + mark);
    container.appendChild(node);
  }
}

function drawAttachment(bubble, attachment) {
  if (!attachment) return;
  if (attachment.kind === "photo") {
    const img = el("img", "photo");
    img.src = "/api/files/" + encodeURIComponent(attachment.file_id);
    img.alt = "photo";
    img.loading = "lazy";
    bubble.appendChild(img);
  } else if (attachment.kind === "document") {
    const link = el("a", "document", "📄 " + attachment.name);
    link.href = "/api/files/" + encodeURIComponent(attachment.file_id) +
      "?name=" + encodeURIComponent(attachment.name);
    link.download = attachment.name;
    bubble.appendChild(link);
  } else if (attachment.kind === "contact") {
    bubble.appendChild(el("div", "contact", "📱 Contact: " + attachment.phone));
  } else if (attachment.kind === "sticker") {
    bubble.appendChild(el("div", "sticker", attachment.emoji));
  } else if (attachment.kind === "voice") {
    bubble.appendChild(el("div", "voice", "🎤 Voice message, " + attachment.duration + " s"));
  }
}

function drawButtons(bubble, role, message) {
  if (!message.buttons.length) return;
  const box = el("div", "buttons");
  for (const row of message.buttons) {
    const line = el("div", "button-row");
    for (const button of row) {
      const press = el("button", "inline-button", button.text);
      press.type = "button";
      if (button.url) {
        press.addEventListener("click", () => window.open(button.url, "_blank", "noopener"));
      } else if (button.data !== undefined) {
        press.addEventListener("click", () => pressButton(role, message, button.data));
      } else {
        press.disabled = true;
      }
      line.appendChild(press);
    }
    box.appendChild(line);
  }
  bubble.appendChild(box);
}

function drawMessage(role, message) {
  if (message.service) return el("div", "service", message.service);
  const mine = !message.sender.is_bot && message.sender.id === actorOf(role);
  const bubble = el("div", "msg " + (mine ? "out" : "in") + (message.sender.is_bot ? " bot" : ""));
  bubble.dataset.id = message.id;
  if (role === "group" || !mine) bubble.appendChild(el("div", "sender", message.sender.name));
  if (message.reply_to) bubble.appendChild(el("div", "quote", message.reply_to.text || "…"));
  drawAttachment(bubble, message.attachment);
  if (message.segments.length) {
    const text = el("div", "text");
    drawSegments(text, message.segments);
    bubble.appendChild(text);
  }
  const meta = el("div", "meta");
  const time = message.date ? new Date(message.date * 1000) : null;
  meta.textContent = (message.edited ? "edited " : "") +
    (time ? time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
  const reply = el("button", "reply-button", "↩");
  reply.type = "button";
  reply.title = "Reply";
  reply.addEventListener("click", () => setReply(role, message));
  meta.appendChild(reply);
  bubble.appendChild(meta);
  drawButtons(bubble, role, message);
  return bubble;
}

function setReply(role, message) {
  state.replyTo[role] = message ? message.id : null;
  const note = panes[role].querySelector(".reply-note");
  note.hidden = !message;
  if (message) {
    const quoted = message.segments.map((s) => s.text).join("");
    note.querySelector("span").textContent = "Reply to: " + quoted.slice(0, 80);
  }
}

function drawKeyboard(role, keyboard) {
  const box = panes[role].querySelector(".keyboard");
  box.replaceChildren();
  box.hidden = !keyboard;
  if (!keyboard) return;
  for (const row of keyboard) {
    const line = el("div", "button-row");
    for (const button of row) {
      const press = el("button", "keyboard-button", button.text);
      press.type = "button";
      press.addEventListener("click", () => {
        if (button.request_contact) {
          api("/api/contact", { user_id: actorOf(role) }).catch(() => {});
        } else {
          sendText(role, button.text);
        }
      });
      line.appendChild(press);
    }
    box.appendChild(line);
  }
}

async function refreshChat(role) {
  const chat = chatOf(role);
  if (!chat) return;
  const params = new URLSearchParams({ chat: String(chat) });
  const thread = threadOf(role);
  if (thread !== null) params.set("thread", String(thread));
  const data = await api("/api/messages?" + params);
  const list = panes[role].querySelector(".messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const drawn = data.messages.map((m) => drawMessage(role, m));
  if (!drawn.length) drawn.push(el("div", "empty", EMPTY[role]));
  list.replaceChildren(...drawn);
  if (atBottom || list.dataset.drawnFor !== params.toString()) list.scrollTop = list.scrollHeight;
  list.dataset.drawnFor = params.toString();
  if (role !== "group") drawKeyboard(role, data.keyboard);
  for (const toast of data.toasts) {
    if (state.toastsSeen.has(toast.id)) continue;
    state.toastsSeen.add(toast.id);
  }
}

// --- acting ----------------------------------------------------------------------------------

function where(role) {
  const body = { user_id: actorOf(role), chat_id: chatOf(role) };
  const thread = threadOf(role);
  if (thread !== null && thread !== "general") body.thread_id = thread;
  return body;
}

async function sendText(role, text) {
  const body = { ...where(role), text };
  if (state.replyTo[role]) body.reply_to = state.replyTo[role];
  await api("/api/send", body);
  setReply(role, null);
}

async function pressButton(role, message, data) {
  const answer = await api("/api/press", { ...where(role), message_id: message.id, data });
  if (answer.text) showToast(answer.text, answer.alert);
}

async function upload(role, file, caption) {
  const form = new FormData();
  for (const [key, value] of Object.entries(where(role))) form.append(key, String(value));
  if (caption) form.append("caption", caption);
  form.append("file", file, file.name);
  const response = await fetch("/api/upload", { method: "POST", body: form });
  const data = await response.json().catch(() => ({ ok: false }));
  if (!response.ok || !data.ok) showToast(data.error || "upload failed", true);
}

// --- the world -------------------------------------------------------------------------------

function fillSelect(select, people, selected) {
  const options = people.map((p) => {
    const option = el("option", null, p.name);
    option.value = String(p.id);
    option.selected = p.id === selected;
    return option;
  });
  select.replaceChildren(...options);
}

function drawTopics() {
  const nav = document.getElementById("topics");
  const entries = [{ id: "general", name: "General", closed: false }, ...state.world.group.topics];
  nav.replaceChildren(...entries.map((topic) => {
    const button = el("button", "topic" + (String(topic.id) === String(state.topic) ? " current" : ""),
      (topic.closed ? "🔒 " : "# ") + topic.name);
    button.type = "button";
    button.addEventListener("click", () => {
      state.topic = topic.id;
      setReply("group", null);
      drawTopics();
      refreshChat("group");
    });
    return button;
  }));
}

async function refreshWorld() {
  state.world = await api("/api/world");
  const world = state.world;
  if (!world.customers.length) {
    await api("/api/customers", { first_name: "Alice" });
    state.world = await api("/api/world");
    return refreshWorld();
  }
  if (!world.customers.some((c) => c.id === state.customerId)) state.customerId = world.customers[0].id;
  if (!world.agents.some((a) => a.id === state.agentId)) state.agentId = world.agents[0].id;
  fillSelect(document.getElementById("customer-select"), world.customers, state.customerId);
  const actors = [...world.agents, world.supervisor];
  fillSelect(document.getElementById("agent-select"), actors, state.agentId);
  document.getElementById("group-title").textContent = world.group.title + " (agents' group)";
  document.getElementById("supervisor-title").textContent =
    world.supervisor.name + " (supervisor) with " + world.bot.name;
  document.getElementById("console-link").href = world.console_login;
  const errors = document.getElementById("api-errors");
  errors.hidden = !world.api_errors.length;
  errors.textContent = "⚠ Telegram refused " + world.api_errors.length + " request(s)";
  errors.title = world.api_errors.map((e) => e.method + ": " + e.error).join("\n");
  if (state.topic !== "general" && !world.group.topics.some((t) => t.id === state.topic)) {
    state.topic = "general";
  }
  drawTopics();
}

let refreshing = null;
let again = false;

async function refreshAll() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      try {
        await refreshWorld();
        await Promise.all(["customer", "group", "supervisor"].map(refreshChat));
      } catch (error) {
        console.warn(error);
      }
    } while (again);
  })();
  await refreshing;
  refreshing = null;
  document.body.dataset.version = String(state.world ? state.world.version : 0);
}

function setUpPane(role) {
  const pane = document.querySelector(`.chat[data-role="${role}"]`);
  pane.appendChild(document.getElementById("chat-template").content.cloneNode(true));
  panes[role] = pane;
  const form = pane.querySelector(".composer");
  const input = form.querySelector("textarea");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    sendText(role, text).catch(() => { input.value = text; });
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  const file = form.querySelector("input[type=file]");
  file.addEventListener("change", () => {
    if (!file.files.length) return;
    upload(role, file.files[0], input.value.trim()).finally(() => { file.value = ""; input.value = ""; });
  });
  pane.querySelector(".cancel-reply").addEventListener("click", () => setReply(role, null));
}

function listen() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.className = "live on"; });
  events.addEventListener("error", () => { live.className = "live off"; });
  events.addEventListener("change", () => { refreshAll(); });
}

function start() {
  for (const role of ["customer", "group", "supervisor"]) setUpPane(role);
  document.getElementById("customer-select").addEventListener("change", (event) => {
    state.customerId = Number(event.target.value);
    setReply("customer", null);
    refreshAll();
  });
  document.getElementById("agent-select").addEventListener("change", (event) => {
    state.agentId = Number(event.target.value);
    refreshAll();
  });
  document.getElementById("new-customer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("new-customer-name");
    const name = input.value.trim();
    if (!name) return;
    const created = await api("/api/customers", { first_name: name });
    input.value = "";
    state.customerId = created.customer.id;
    await refreshAll();
  });
  refreshAll().then(listen);
}

document.addEventListener("DOMContentLoaded", start);
