// amfeishu template playground: plain JS, no build step.
// The server renders (Jinja2 sandbox) and draws the card; this page only wires the controls.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  options: null,
  saved: "", // the file's text as loaded; source differs from it = edited
  forced: false, // a file picked by hand is rendered whatever the payload's severity
  seq: 0, // answers to older requests are dropped
  timer: null,
};

async function api(path, init) {
  const response = await fetch(path, { credentials: "same-origin", ...init });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function target() {
  return state.options.targets.find((t) => t.name === $("target").value);
}

function edited() {
  return $("source").value !== state.saved;
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(title, detail, line) {
  const box = $("error");
  box.replaceChildren();
  const head = document.createElement("strong");
  head.textContent = title;
  const body = document.createElement("div");
  body.className = "detail";
  body.textContent = detail;
  box.append(head, body);
  if (line) {
    const jump = document.createElement("button");
    jump.type = "button";
    jump.textContent = `Go to line ${line}`;
    jump.addEventListener("click", () => selectLine(line));
    box.append(jump);
  }
  box.hidden = false;
}

function selectLine(line) {
  const area = $("source");
  const lines = area.value.split("\n");
  const n = Math.min(Math.max(line, 1), lines.length);
  let start = 0;
  for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
  area.focus();
  area.setSelectionRange(start, start + lines[n - 1].length);
  area.scrollTop = Math.max(0, (n - 5) * 18);
}

function payload() {
  try {
    return JSON.parse($("payload").value);
  } catch (e) {
    showError("The payload is not JSON", String(e.message || e));
    return undefined;
  }
}

async function loadFile(file) {
  const t = target();
  const data = await api(
    `/ui/api/template?target=${encodeURIComponent(t.name)}&file=${encodeURIComponent(file)}`,
  );
  $("file").value = file;
  $("source").value = data.source;
  state.saved = data.source;
  $("origin").textContent = data.origin;
  updateDirty();
}

function updateDirty() {
  const file = $("file").value;
  $("dirty-note").textContent = edited()
    ? `edited: ${file} is rendered from the text below (not saved)`
    : state.forced
      ? `${file}, as chosen (unchanged)`
      : "unchanged: the file is picked by severity, as amfeishu does";
}

async function render() {
  const data = payload();
  if (data === undefined) return;
  const body = { payload: data, target: $("target").value, locale: $("locale").value };
  if (edited() || state.forced) {
    body.file = $("file").value;
    body.source = $("source").value;
  }
  const seq = ++state.seq;
  setStatus("rendering…");
  let result;
  try {
    result = await api("/ui/api/render", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    if (seq !== state.seq) return;
    setStatus("");
    showError("Cannot render", String(e.message || e));
    return;
  }
  if (seq !== state.seq) return;
  setStatus(`rendered ${new Date().toLocaleTimeString()}`);
  show(result);
  // Unchanged: follow the file amfeishu picks for this payload (firing-critical, resolved…).
  const picked = result.template.includes("/") ? result.template.split("/").pop() : "";
  if (!edited() && !state.forced && picked && picked !== $("file").value) await loadFile(picked);
}

function show(result) {
  if (result.template_error) {
    showError(
      result.error_line ? `Template error at line ${result.error_line}` : "Template error",
      result.template_error +
        "\n\nFeishu would get the built-in safe card instead; it is shown below.",
      result.error_line,
    );
  } else {
    $("error").hidden = true;
  }
  // The server builds this HTML from escaped text and checked URLs only.
  $("preview").innerHTML = result.html;
  const pct = (100 * result.size) / result.limit;
  $("size").textContent =
    `${(result.size / 1000).toFixed(1)} KB of ${result.limit / 1000} KB (${pct.toFixed(0)}%)` +
    (result.size > result.limit ? " — over Feishu's limit: the size guard will split it" : "");
  $("size").className = result.size > result.limit ? "fs-size fs-size-over" : "fs-size";
  $("meter").className = result.size > result.limit ? "meter over" : "meter";
  $("meter").firstElementChild.style.width = `${Math.min(100, pct)}%`;
  $("used").textContent = `template: ${result.template}`;
  $("json").textContent = JSON.stringify(result.message, null, 2);
}

function later() {
  clearTimeout(state.timer);
  state.timer = setTimeout(render, 300);
}

async function loadSample() {
  const name = $("sample").value;
  if (!name) return;
  const data = await api(`/ui/api/samples/${encodeURIComponent(name)}`);
  $("payload").value = JSON.stringify(data, null, 2);
}

function fillFiles() {
  const t = target();
  $("file").replaceChildren(...t.files.filter((f) => f.endsWith(".j2")).map((f) => option(f, f)));
}

async function refreshRecent() {
  let cards;
  try {
    cards = await api("/ui/api/recent");
  } catch (e) {
    return;
  }
  const box = $("recent");
  box.replaceChildren();
  if (!cards.length) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = "None yet. Cards of targets without a webhook (preview targets) appear here.";
    box.append(p);
    return;
  }
  for (const card of cards) {
    const item = document.createElement("div");
    item.className = "item";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent =
      `${card.target} · ${new Date(card.at * 1000).toLocaleString()} · ` +
      `${(card.size / 1000).toFixed(1)} KB · trace ${card.trace_id || "-"}`;
    const view = document.createElement("div");
    view.className = "fs-chat";
    view.innerHTML = card.html; // server-built, escaped
    item.append(meta, view);
    box.append(item);
  }
}

async function start() {
  state.options = await api("/ui/api/options");
  for (const s of state.options.samples) $("sample").append(option(s.name, s.title));
  for (const t of state.options.targets) {
    const kind = t.app ? "app: buttons call back" : t.preview ? "preview" : "webhook";
    $("target").append(option(t.name, `${t.name} (${t.template} · ${t.language} · ${t.msg_type} · ${kind})`));
  }
  $("sample").value = state.options.samples.some((s) => s.name === "firing")
    ? "firing"
    : (state.options.samples[0] || {}).name || "";
  fillFiles();
  await loadSample();
  await render();
  if (!$("source").value && $("file").value) await loadFile($("file").value);

  $("sample").addEventListener("change", async () => {
    await loadSample();
    await render();
  });
  let set = target().template;
  $("target").addEventListener("change", async () => {
    if (target().template !== set) {
      // another template set: its own files, picked afresh
      set = target().template;
      const file = $("file").value;
      fillFiles();
      state.forced = false;
      await loadFile(target().files.includes(file) ? file : $("file").value);
    }
    await render();
  });
  $("file").addEventListener("change", async () => {
    state.forced = true;
    await loadFile($("file").value);
    await render();
  });
  $("reset").addEventListener("click", async () => {
    state.forced = false;
    await loadFile($("file").value);
    await render();
  });
  $("source").addEventListener("input", () => {
    updateDirty();
    later();
  });
  $("payload").addEventListener("input", later);
  $("locale").addEventListener("change", render);
  $("refresh").addEventListener("click", refreshRecent);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Tab" && e.target === $("source")) {
      e.preventDefault();
      const area = $("source");
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      updateDirty();
      later();
    }
  });
  refreshRecent();
}

start().catch((e) => showError("The playground could not start", String(e.message || e)));
