// The lionflow playground: the server's own API, from the browser, with nothing to build and
// nothing fetched from elsewhere. Text from models and stores only ever goes in as textContent.
"use strict";

const KEY_ITEM = "lionflow.apiKey";
const MAX_MODELS = 4;
const RESUME_ATTEMPTS = 5;

const $ = (selector, root = document) => root.querySelector(selector);

// ---- the API key: asked for when the server refuses, kept for this tab only ----

let keyPrompt = null;

function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

function showKeyStatus() {
  $("#key-status").hidden = storedKey() === null;
}

function askForKey(message) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("#key-dialog");
  const error = $("#key-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("#key-input").value = "";
  keyPrompt = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        // Only the button gives a key: Escape closes the dialog with nothing.
        const key = dialog.returnValue === "save" ? $("#key-input").value.trim() : "";
        keyPrompt = null;
        if (key) sessionStorage.setItem(KEY_ITEM, key);
        showKeyStatus();
        resolve(Boolean(key));
      },
      { once: true },
    );
  });
  dialog.returnValue = "";
  dialog.showModal();
  return keyPrompt;
}

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body.error || body;
    if (error && error.message) message = error.message;
  } catch (_) {
    // not JSON: the status says it
  }
  return new APIError(response.status, message);
}

// fetch() with the tab's key. A 401 asks the person for a key and tries again with it; closing the
// dialog without one gives up with the server's refusal.
async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = storedKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.ok) return response;
    const error = await errorOf(response);
    if (response.status !== 401) throw error;
    sessionStorage.removeItem(KEY_ITEM);
    showKeyStatus();
    if (!(await askForKey(key ? error.message : ""))) throw error;
  }
}

// ---- server-sent events, read from a fetch() body ----

async function* events(response, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", onAbort);
  let buffer = "";
  let event = { id: null, name: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (event.data.length) yield { id: event.id, name: event.name, data: event.data.join("\n") };
          event = { id: null, name: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a ping
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(text);
        else if (field === "id") event.id = text;
        else if (field === "event") event.name = text;
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A stream that resumes after a dropped connection: `open()` starts it; once it has an id,
// `resumePath(id)` with Last-Event-ID continues it from the last event read.
async function followStream({ open, resumePath, onEvent, signal, onResume }) {
  let streamId = null;
  let lastEventId = null;
  let response = await open();
  for (let attempt = 0; ; ) {
    try {
      for await (const event of events(response, signal)) {
        attempt = 0;
        if (event.id !== null) lastEventId = event.id;
        const id = onEvent(event);
        if (id) streamId = id;
        if (event.data === "[DONE]" || event.final) return;
      }
      if (signal.aborted) return;
      if (onEvent.finished && onEvent.finished()) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof APIError) throw error;
    }
    // The connection dropped before the stream's end: resume it where it stopped.
    attempt += 1;
    if (streamId === null || attempt > RESUME_ATTEMPTS) throw new Error("the connection was lost");
    onResume(attempt);
    await sleep(200 * attempt);
    if (signal.aborted) return;
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      response = await api(resumePath(streamId), { headers, signal });
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof APIError && error.status !== 502 && error.status !== 503) throw error;
      response = { body: new ReadableStream({ start: (c) => c.error(error) }) };
    }
  }
}

// Ask the server to stop a stream now. The stream is already closed here; a server that cannot
// (an older one, or the stream already ended) changes nothing for the page.
function cancel(path) {
  api(path, { method: "POST" }).catch(() => {});
}

// ---- Compare: one pane per model, streaming side by side ----

const panes = new Map(); // model name -> Pane

class Pane {
  constructor(model) {
    this.model = model;
    this.messages = [];
    this.element = $("#pane-template").content.firstElementChild.cloneNode(true);
    this.element.dataset.model = model;
    $(".model", this.element).textContent = model;
    $(".stop", this.element).addEventListener("click", () => this.stop());
    $("#panes").append(this.element);
    this.controller = null;
  }

  set(name, value) {
    $(`.${name}`, this.element).textContent = value;
  }

  state(state, label) {
    this.element.dataset.state = state;
    this.set("status", label || state);
    $(".stop", this.element).disabled = state !== "streaming" && state !== "waiting" && state !== "resuming";
  }

  turn(role, text) {
    const turn = document.createElement("div");
    turn.className = `turn ${role}`;
    turn.textContent = text;
    $(".log", this.element).append(turn);
    turn.scrollIntoView({ block: "end" });
    return turn;
  }

  async send(prompt, system) {
    this.messages.push({ role: "user", content: prompt });
    this.turn("user", prompt);
    const reply = this.turn("assistant", "");
    const controller = new AbortController();
    this.controller = controller;
    this.streamId = null;
    const started = performance.now();
    let first = null;
    let text = "";
    let chunks = 0;
    let outputTokens = null;
    let finish = null;
    this.element.dataset.resumes = "0";
    this.set("ttft", "–");
    this.set("tps", "–");
    this.set("tokens", "–");
    this.set("chunks", "0");
    this.state("waiting");
    const body = {
      model: this.model,
      messages: (system ? [{ role: "system", content: system }] : []).concat(this.messages),
      stream: true,
      stream_options: { include_usage: true },
    };
    const rate = () => {
      if (first === null) return;
      const seconds = (performance.now() - first) / 1000;
      const count = outputTokens ?? chunks;
      if (seconds > 0) this.set("tps", `${outputTokens === null ? "≈" : ""}${(count / seconds).toFixed(1)}`);
    };
    const onEvent = (event) => {
      if (event.data === "[DONE]") return null;
      const data = JSON.parse(event.data);
      if (data.error) throw new APIError(500, data.error.message || "the model failed");
      for (const choice of data.choices || []) {
        const delta = choice.delta || {};
        if (delta.content) {
          if (first === null) {
            first = performance.now();
            this.set("ttft", `${Math.round(first - started)} ms`);
          }
          if (this.element.dataset.state !== "streaming") this.state("streaming"); // (also after a resume)
          text += delta.content;
          chunks += 1;
          reply.textContent = text;
          this.set("chunks", String(chunks));
          rate();
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      // A model that reports no usage comes as zeros: the chunks' estimate stays.
      if (data.usage && (data.usage.completion_tokens > 0 || chunks === 0)) {
        outputTokens = data.usage.completion_tokens;
        this.set("tokens", String(outputTokens));
        rate();
      }
      this.streamId = data.id;
      return data.id;
    };
    onEvent.finished = () => false;
    // The rate goes on being updated while the stream is quiet: a stall shows as a falling rate.
    const ticker = setInterval(rate, 250);
    try {
      await followStream({
        open: () =>
          api("/v1/chat/completions", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify(body),
            signal: controller.signal,
          }),
        resumePath: (id) => `/v1/chat/completions/${encodeURIComponent(id)}`,
        onEvent,
        signal: controller.signal,
        onResume: (attempt) => {
          this.element.dataset.resumes = String(Number(this.element.dataset.resumes) + 1);
          this.state("resuming", `reconnecting (${attempt})…`);
        },
      });
      if (controller.signal.aborted) {
        if (text) reply.classList.add("incomplete");
        else reply.remove();
        this.state("stopped");
      } else {
        this.state("done", finish ? `done (${finish})` : "done");
      }
    } catch (error) {
      if (controller.signal.aborted) {
        this.state("stopped");
      } else {
        this.turn("error", error.message);
        this.state("error");
      }
      if (text) reply.classList.add("incomplete");
      else reply.remove(); // nothing came: the error (or the stop) says it all
    } finally {
      clearInterval(ticker);
      this.controller = null;
      if (text) this.messages.push({ role: "assistant", content: text });
      else this.messages.pop(); // unanswered: the next prompt is not sent after it
      rate();
      syncPanes(); // a model unchecked while it streamed leaves now
    }
  }

  stop() {
    // Closing the stream ends it here; the cancel request stops the model's call at the server at
    // once, even where the server would wait for a reconnect (resume_grace).
    if (!this.controller) return;
    this.controller.abort();
    if (this.streamId) cancel(`/v1/chat/completions/${encodeURIComponent(this.streamId)}/cancel`);
  }
}

function chosenModels() {
  return [...document.querySelectorAll("#models input:checked")].map((input) => input.value);
}

function syncPanes() {
  const chosen = chosenModels();
  for (const [model, pane] of panes) {
    if (!chosen.includes(model) && !pane.controller) {
      pane.element.remove();
      panes.delete(model);
    }
  }
  for (const model of chosen) if (!panes.has(model)) panes.set(model, new Pane(model));
  const boxes = document.querySelectorAll("#models input");
  for (const box of boxes) box.disabled = !box.checked && chosen.length >= MAX_MODELS;
  $("#send").disabled = chosen.length === 0;
  $("#panes").dataset.count = String(chosen.length);
}

async function loadModels() {
  const fieldset = $("#models");
  try {
    const response = await api("/v1/models");
    const { data } = await response.json();
    $("#models-empty").remove();
    data.forEach((model, index) => {
      const label = document.createElement("label");
      label.className = "model-choice";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = model.id;
      box.checked = index < 2;
      box.addEventListener("change", syncPanes);
      label.append(box, ` ${model.id}`);
      const owner = document.createElement("small");
      owner.textContent = ` ${model.owned_by}`;
      label.append(owner);
      fieldset.append(label);
    });
    syncPanes();
  } catch (error) {
    const empty = $("#models-empty");
    empty.textContent = `Could not list the models: ${error.message} `;
    if (error.status === 401) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.id = "give-key";
      retry.textContent = "Enter an API key";
      retry.addEventListener("click", () => {
        empty.textContent = "Loading the served models…";
        loadModels();
      });
      empty.append(retry);
    }
  }
}

function sendPrompt(event) {
  event.preventDefault();
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  syncPanes();
  const system = $("#system").value.trim();
  const busy = [...panes.values()].filter((pane) => pane.controller);
  if (busy.length) {
    notice(`Wait for ${busy.map((pane) => pane.model).join(", ")} to finish, or stop it.`);
    return;
  }
  notice("");
  $("#prompt").value = "";
  for (const pane of panes.values()) pane.send(prompt, system);
}

// ---- Sessions: what the server's store keeps ----

async function loadSessions() {
  const list = $("#session-list");
  list.replaceChildren();
  try {
    const { data } = await (await api("/v1/sessions")).json();
    if (!data.length) list.append(item("empty", "No stored sessions yet."));
    for (const session of data) {
      const entry = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.session = session.id;
      button.textContent = session.name || session.id;
      const meta = document.createElement("small");
      meta.textContent = `${session.messages} messages · ${new Date(session.updated_at).toLocaleString()}`;
      button.append(document.createElement("br"), meta);
      button.addEventListener("click", () => showSession(session.id));
      entry.append(button);
      list.append(entry);
    }
  } catch (error) {
    list.append(item("empty", error.message));
  }
}

function item(className, text) {
  const entry = document.createElement("li");
  entry.className = className;
  entry.textContent = text;
  return entry;
}

async function showSession(id) {
  const detail = $("#session-detail");
  for (const button of document.querySelectorAll("#session-list button")) {
    button.setAttribute("aria-current", String(button.dataset.session === id));
  }
  try {
    const session = await (await api(`/v1/sessions/${encodeURIComponent(id)}`)).json();
    const heading = document.createElement("h2");
    heading.textContent = session.name || `Session ${session.id}`;
    const parts = [heading];
    for (const branch of session.branches) {
      const section = document.createElement("section");
      section.className = "branch";
      section.dataset.branch = branch.name;
      const title = document.createElement("h3");
      title.textContent = `Branch ${branch.name} (${branch.messages.length} messages)`;
      section.append(title);
      for (const message of branch.messages) {
        const turn = document.createElement("div");
        turn.className = `turn ${message.role}${message.incomplete ? " incomplete" : ""}`;
        const label = document.createElement("div");
        label.className = "label";
        label.textContent = message.label;
        const text = document.createElement("div");
        text.className = "text";
        text.textContent = message.text;
        turn.append(label, text);
        section.append(turn);
      }
      parts.push(section);
    }
    detail.replaceChildren(...parts);
    detail.dataset.session = session.id; // which session the panel shows (once it shows it)
  } catch (error) {
    const message = document.createElement("p");
    message.className = "error";
    message.textContent = error.message;
    detail.replaceChildren(message);
  }
}

// ---- Flows: a served flow, run and watched per operation ----

let flowRun = null; // the running flow's AbortController
let flowRunId = null;

async function loadFlows() {
  const select = $("#flow-name");
  if (flowRun) return; // the list stays as the running flow's
  const chosen = select.value;
  try {
    const { data } = await (await api("/v1/flows")).json();
    if (flowRun) return;
    select.replaceChildren(
      ...data.map((flow) => {
        const option = document.createElement("option");
        option.value = option.textContent = flow.id;
        return option;
      }),
    );
    if (data.some((flow) => flow.id === chosen)) select.value = chosen;
    $("#run-flow").disabled = data.length === 0;
    if (!data.length) $("#run-status").textContent = "This server serves no flows (lionflow serve --flow NAME=FILE.py).";
  } catch (error) {
    $("#run-status").textContent = error.message;
  }
}

function operationRow(data) {
  const body = $("#operations tbody");
  let row = body.querySelector(`tr[data-operation="${CSS.escape(data.operation)}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.operation = data.operation;
    row.dataset.chunks = "0";
    for (const name of ["name", "state", "chunks", "time", "text"]) {
      const cell = document.createElement("td");
      cell.className = name;
      row.append(cell);
    }
    $(".name", row).textContent = data.name;
    $(".chunks", row).textContent = "0";
    row.started = performance.now();
    body.append(row);
  }
  return row;
}

async function runFlow(event) {
  event.preventDefault();
  if (flowRun) return;
  const name = $("#flow-name").value;
  let inputs;
  try {
    inputs = JSON.parse($("#flow-inputs").value || "{}");
    if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) throw new Error("not an object");
  } catch (error) {
    $("#run-status").textContent = `Inputs must be a JSON object (${error.message}).`;
    return;
  }
  $("#operations tbody").replaceChildren();
  const controller = new AbortController();
  flowRun = controller;
  flowRunId = null;
  $("#run-flow").disabled = true;
  $("#stop-flow").disabled = false;
  const status = $("#run-status");
  status.dataset.state = "running";
  status.textContent = "running…";
  let ended = false;
  const onEvent = (event) => {
    const data = JSON.parse(event.data);
    if (event.name.startsWith("operation.")) {
      const row = operationRow(data);
      const kind = event.name.slice("operation.".length);
      if (kind === "chunk") {
        const chunk = data.chunk;
        row.dataset.chunks = String(Number(row.dataset.chunks) + 1);
        $(".chunks", row).textContent = row.dataset.chunks;
        if (chunk.type === "text" && chunk.data) $(".text", row).textContent += chunk.data;
        if ($(".state", row).textContent !== "streaming") $(".state", row).textContent = "streaming";
      } else {
        $(".state", row).textContent = kind;
        row.dataset.state = kind;
        if (kind === "failed") $(".text", row).textContent = `${data.error.type}: ${data.error.message}`;
        if (kind === "completed" && !$(".text", row).textContent && data.result !== undefined) {
          const result = data.result;
          $(".text", row).textContent = typeof result === "string" ? result : JSON.stringify(result);
        }
      }
      $(".time", row).textContent = `${((performance.now() - row.started) / 1000).toFixed(1)} s`;
    } else if (event.name.startsWith("run.") && event.name !== "run.started") {
      ended = true;
      status.dataset.state = event.name.slice(4);
      status.textContent = event.name.slice(4) + (data.error ? `: ${data.error.message}` : "");
      event.final = true;
    }
    if (data.run_id) flowRunId = data.run_id;
    return data.run_id;
  };
  onEvent.finished = () => ended;
  try {
    await followStream({
      open: () =>
        api(`/v1/flows/${encodeURIComponent(name)}/runs`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ inputs }),
          signal: controller.signal,
        }),
      resumePath: (id) => `/v1/flows/runs/${encodeURIComponent(id)}`,
      onEvent,
      signal: controller.signal,
      onResume: (attempt) => {
        status.textContent = `reconnecting (${attempt})…`;
      },
    });
    if (controller.signal.aborted) {
      status.dataset.state = "stopped";
      status.textContent = "stopped";
    }
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = error.message;
  } finally {
    flowRun = null;
    $("#run-flow").disabled = false;
    $("#stop-flow").disabled = true;
  }
}

// ---- the page ----

function notice(text) {
  const element = $("#notice");
  element.textContent = text;
  element.hidden = !text;
}

function showTab(id) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.getAttribute("aria-controls") === id;
    tab.setAttribute("aria-selected", String(selected));
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
  if (id === "sessions") loadSessions();
  if (id === "flows") loadFlows();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.getAttribute("aria-controls")));
  }
  $("#prompt-form").addEventListener("submit", sendPrompt);
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#prompt-form").requestSubmit();
  });
  $("#clear").addEventListener("click", () => {
    for (const pane of panes.values()) pane.stop();
    for (const pane of panes.values()) pane.element.remove();
    panes.clear();
    syncPanes();
  });
  $("#refresh-sessions").addEventListener("click", loadSessions);
  $("#flow-form").addEventListener("submit", runFlow);
  $("#stop-flow").addEventListener("click", () => {
    if (!flowRun) return;
    flowRun.abort();
    if (flowRunId) cancel(`/v1/flows/runs/${encodeURIComponent(flowRunId)}/cancel`);
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    showKeyStatus();
  });
  showKeyStatus();
  loadModels();
});
