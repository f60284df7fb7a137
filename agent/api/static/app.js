// Muse in the browser: one ES module over the service's own HTTP API (nothing from a network).
// The chat streams from /v1/chat/completions (OpenAI's server-sent events); thumbs go to
// /v1/feedback with an idempotency key per (impression, item, kind), so a double click counts once.

const $ = (id) => document.getElementById(id);
const state = { user: "", messages: [], busy: false };

// ------------------------------------------------------------ HTTP

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data?.error?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

// ------------------------------------------------------------ users

async function loadUsers() {
  const select = $("user");
  select.replaceChildren();
  try {
    const { users } = await api("GET", "/v1/users");
    for (const u of users) select.append(new Option(`${u.user_id} (${u.events} events)`, u.user_id));
  } catch (e) {
    showBanner(`Could not list users: ${e.message}`);
  }
  if (!select.options.length) newUser();
  await selectUser(select.value);
}

function newUser() {
  const id = `guest-${Date.now().toString(36)}`;
  const option = new Option(`${id} (new)`, id);
  $("user").append(option);
  $("user").value = id;
  return id;
}

async function selectUser(id) {
  state.user = id;
  state.messages = [];
  $("log").replaceChildren();
  $("forget-result").textContent = "";
  const events = await loadHistory();
  if (events.length === 0) await showOnboarding();
  else $("onboarding").hidden = true;
}

async function loadHistory() {
  const list = $("history");
  list.replaceChildren();
  let events = [];
  try {
    events = (await api("GET", `/v1/users/${encodeURIComponent(state.user)}/history`)).events;
  } catch (e) {
    if (e.status !== 404) showBanner(`Could not read the history: ${e.message}`);
  }
  if (!events.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No history yet.";
    list.append(li);
  }
  for (const e of [...events].reverse().slice(0, 50)) {
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    li.dataset.item = e.item_id;
    const value = ["rating", "dwell"].includes(e.kind) && e.value !== null ? ` ${e.value}` : "";
    li.textContent = `${e.kind}${value}: ${e.title || e.item_id}`;
    list.append(li);
  }
  return events;
}

// ------------------------------------------------------------ cold start

async function showOnboarding() {
  const box = $("onboarding");
  const list = $("onboarding-items");
  list.replaceChildren();
  let items = [];
  try {
    items = (await api("GET", `/v1/onboarding?user_id=${encodeURIComponent(state.user)}`)).items;
  } catch (e) {
    showBanner(`Could not load items to start from: ${e.message}`);
  }
  for (const it of items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.dataset.id = it.id;
    button.setAttribute("aria-pressed", "false");
    button.textContent = `${it.title}${it.year ? ` (${it.year})` : ""}`;
    const meta = document.createElement("small");
    meta.textContent = it.categories.join(", ");
    button.append(meta);
    button.addEventListener("click", () => {
      button.setAttribute("aria-pressed", String(button.getAttribute("aria-pressed") !== "true"));
    });
    li.append(button);
    list.append(li);
  }
  box.hidden = items.length === 0;
}

async function saveOnboarding() {
  const liked = [...document.querySelectorAll("#onboarding-items [aria-pressed=true]")].map((b) => b.dataset.id);
  if (!liked.length) {
    showBanner("Mark at least one item you like, or just ask.");
    return;
  }
  const events = liked.map((id) => ({
    user_id: state.user,
    item_id: id,
    kind: "like",
    idempotency_key: `onboarding|${state.user}|${id}`,
  }));
  try {
    await api("POST", "/v1/feedback", { events });
    showBanner("");
    $("onboarding").hidden = true;
    note(`Saved ${liked.length} liked item${liked.length > 1 ? "s" : ""}: the next answer is personalised.`);
    await loadHistory();
  } catch (e) {
    showBanner(`Could not save: ${e.message}`);
  }
}

// ------------------------------------------------------------ chat

function note(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = text;
  $("log").append(li);
}

function bubble(role, text) {
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Muse";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  $("log").append(li);
  return li;
}

const PICK = /^(\d+)\. (.+?)(?: \((\d{4})\))? \[#([^\]\s]+)\]$/;

function options() {
  const chosen = [...$("categories").selectedOptions].map((o) => o.value);
  const out = { k: 5, diversity: Number($("diversity").value) };
  if (chosen.length) out.categories = chosen;
  if ($("year-min").value) out.year_min = Number($("year-min").value);
  if ($("year-max").value) out.year_max = Number($("year-max").value);
  return out;
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  $("message").value = "";
  state.messages.push({ role: "user", content: text });
  bubble("user", text);
  const reply = bubble("assistant", "");
  reply.setAttribute("aria-busy", "true");
  const cards = document.createElement("ol");
  cards.className = "cards";
  reply.append(cards);
  try {
    const full = await stream(reply.querySelector(".text"), cards);
    state.messages.push({ role: "assistant", content: full });
  } catch (e) {
    reply.querySelector(".text").textContent = `Error: ${e.message}`;
    reply.classList.add("error");
    state.messages.pop();
  } finally {
    reply.removeAttribute("aria-busy");
    state.busy = false;
    $("send").disabled = false;
    $("message").focus();
  }
}

async function stream(textBox, cards) {
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify({ model: "muse", user: state.user, stream: true, messages: state.messages, muse: options() }),
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new Error(data?.error?.message || `${response.status} ${response.statusText}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let full = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return full;
      const chunk = JSON.parse(data);
      const content = chunk.choices?.[0]?.delta?.content;
      if (content) {
        full += content;
        if (!cards.children.length) skeletonCards(full, cards);
        streamedTexts(full, textBox, cards);
      }
      if (chunk.muse) finalCards(chunk.muse, cards);
    }
  }
  return full;
}

function skeletonCards(text, cards) {
  // The picks arrive first ("1. Title (year) [#id]"): a card each, texts to follow.
  for (const line of text.split("\n")) {
    const m = PICK.exec(line.trim());
    if (!m) continue;
    const card = $("card").content.firstElementChild.cloneNode(true);
    card.dataset.id = m[4];
    card.querySelector(".title").textContent = m[2];
    card.querySelector(".meta").textContent = m[3] || "";
    card.querySelector(".explanation").textContent = "…";
    card.querySelector(".draft").textContent = "…";
    cards.append(card);
  }
}

function streamedTexts(text, textBox, cards) {
  // The reply reads: the picks, "Why:" with one line per pick, "Pitches:" likewise. Each line
  // fills its card as it arrives; the text box keeps what is not on a card (the first line,
  // or why nothing fits, and a note when texts are templates).
  let section = null;
  const rest = [];
  for (const line of text.split("\n")) {
    if (line === "Why:" || line === "Pitches:") {
      section = line === "Why:" ? ".explanation" : ".draft";
      continue;
    }
    const m = /^(\d+)\. (.*)$/.exec(line);
    if (m && (section || PICK.test(line))) {
      const card = cards.children[Number(m[1]) - 1];
      if (section && card) card.querySelector(section).textContent = m[2];
      continue;
    }
    if (line.trim()) rest.push(line);
  }
  textBox.textContent = rest.join("\n");
}

function marked(text, titles) {
  // The explanation as nodes, each cited history title in a <mark> (text nodes only: no HTML).
  const out = [];
  let rest = text;
  while (rest) {
    let first = null;
    for (const t of titles) {
      const at = t ? rest.indexOf(t) : -1;
      if (at >= 0 && (!first || at < first.at)) first = { at, t };
    }
    if (!first) {
      out.push(document.createTextNode(rest));
      break;
    }
    out.push(document.createTextNode(rest.slice(0, first.at)));
    const mark = document.createElement("mark");
    mark.title = "from your history";
    mark.textContent = first.t;
    out.push(mark);
    rest = rest.slice(first.at + first.t.length);
  }
  return out;
}

function finalCards(muse, cards) {
  cards.replaceChildren();
  for (const it of muse.items) {
    const card = $("card").content.firstElementChild.cloneNode(true);
    card.dataset.id = it.id;
    card.querySelector(".title").textContent = it.title;
    card.querySelector(".meta").textContent = [it.year, it.categories.join(", ")].filter(Boolean).join(" · ");
    card.querySelector(".explanation").replaceChildren(...marked(it.explanation, it.cited.map((c) => c.title)));
    card.querySelector(".draft").textContent = it.draft;
    const copy = card.querySelector(".copy");
    copy.setAttribute("aria-label", `Copy the pitch for ${it.title}`);
    copy.addEventListener("click", () => copyText(it.draft, copy));
    for (const button of card.querySelectorAll(".feedback button")) {
      button.setAttribute("aria-label", `${button.textContent.trim()}: ${it.title}`);
      button.addEventListener("click", () => thumb(button, it.id, muse.impression_id));
    }
    cards.append(card);
  }
  const by = document.createElement("p");
  by.className = "ranked-by";
  by.textContent = muse.adapter ? `Ranked by adapter ${muse.adapter}` : "Ranked in retrieval order";
  cards.after(by);
  showBanner(
    muse.degraded
      ? `Some texts are templates: ${muse.degraded_reason || "the language model was unavailable or late"}.`
      : "",
  );
  if (!muse.items.length && muse.reason) note(`Nothing fits: ${muse.reason}`);
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
}

async function thumb(button, itemId, impressionId) {
  if (button.getAttribute("aria-pressed") === "true") return; // counted already
  button.setAttribute("aria-pressed", "true");
  const kind = button.dataset.kind;
  const event = {
    user_id: state.user,
    item_id: itemId,
    kind,
    impression_id: impressionId,
    idempotency_key: `${impressionId}|${itemId}|${kind}`,
  };
  try {
    await api("POST", "/v1/feedback", { events: [event] });
    await loadHistory();
  } catch (e) {
    button.setAttribute("aria-pressed", "false");
    showBanner(`Could not send feedback: ${e.message}`);
  }
}

// ------------------------------------------------------------ forget me

function askForget() {
  $("forget-who").textContent = state.user;
  $("confirm-forget").showModal();
}

async function forget() {
  if ($("confirm-forget").returnValue !== "forget") return;
  try {
    const gone = await api("DELETE", `/v1/users/${encodeURIComponent(state.user)}`);
    const rows = Object.values(gone.deleted).reduce((a, b) => a + b, 0);
    $("forget-result").textContent = `Forgot ${gone.user_id}: ${rows} stored rows deleted.`;
  } catch (e) {
    $("forget-result").textContent = e.status === 404 ? "Nothing stored for this user." : `Failed: ${e.message}`;
  }
  state.messages = [];
  $("log").replaceChildren();
  await loadHistory();
}

// ------------------------------------------------------------ start

async function loadCatalog() {
  try {
    const catalog = await api("GET", "/v1/catalog");
    for (const c of catalog.categories) $("categories").append(new Option(c, c));
    for (const id of ["year-min", "year-max"]) {
      if (catalog.year_min) $(id).min = catalog.year_min;
      if (catalog.year_max) $(id).max = catalog.year_max;
    }
  } catch (e) {
    showBanner(`Could not read the catalog: ${e.message}`);
  }
}

function start() {
  $("ask").addEventListener("submit", send);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("user").addEventListener("change", () => selectUser($("user").value));
  $("new-user").addEventListener("click", () => selectUser(newUser()));
  $("onboarding-done").addEventListener("click", saveOnboarding);
  $("diversity").addEventListener("input", () => {
    $("diversity-value").value = Number($("diversity").value).toFixed(1);
  });
  $("reset").addEventListener("click", () => {
    state.messages = [];
    $("log").replaceChildren();
  });
  $("forget").addEventListener("click", askForget);
  $("confirm-forget").addEventListener("close", forget);
  $("api-key").addEventListener("change", loadUsers);
  loadCatalog();
  loadUsers();
}

start();
