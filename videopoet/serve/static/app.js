// The page of `videopoet serve`: plain JS over the /v1 API. The key (when the server has keys) is kept
// in a SameSite=Strict cookie, so <video src>, downloads and EventSource carry it too.
"use strict";

const $ = (id) => document.getElementById(id);
const TASK_NAMES = {
  text_to_video: "text to video", text_to_image: "text to image", text_to_video_audio: "text to video with sound",
  image_to_video: "image to video", video_continuation: "continue a video", video_inpainting: "inpaint a video",
  video_outpainting: "outpaint a video", video_to_audio: "sound for a video", audio_to_video: "video for a sound",
  unconditional_video: "unconditional video",
};
const ACCEPT = { image: "image/*", video: "video/*", audio: "audio/*,video/*" };
const BOX = ["box-top", "box-left", "box-height", "box-width"];
const SETTINGS = ["steps", "cfg", "temperature", "top_k", "top_p", "choice_temperature", "seed", "seconds", "num_samples"];
let model = null;
let events = null;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    if (response.status === 401) $("key-section").hidden = false;
    let message = (body && body.detail) || `${response.status} ${response.statusText}`;
    const wait = response.headers.get("Retry-After");
    if (wait) message += ` (try again in ${wait} s)`;
    throw new Error(message);
  }
  return body;
}

function mediaElement(file, controls = true) {
  let el;
  if (file.kind === "image") {
    el = document.createElement("img");
    el.alt = "generated image";
  } else {
    el = document.createElement(file.kind === "audio" ? "audio" : "video");
    el.controls = controls;
    el.preload = "metadata";
    if (file.kind === "video") el.setAttribute("playsinline", "");
  }
  el.src = file.url;
  return el;
}

function describe(job) {
  const p = job.params || {};
  const parts = [TASK_NAMES[job.task] || job.task, p.sampler];
  if (p.seed !== null && p.seed !== undefined) parts.push(`seed ${p.seed}`);
  if (p.steps) parts.push(`${p.steps} steps`);
  if (p.cfg !== null && p.cfg !== undefined) parts.push(`cfg ${p.cfg}`);
  if (p.temperature !== null && p.temperature !== undefined) parts.push(`T ${p.temperature}`);
  if (p.seconds) parts.push(`${p.seconds} s`);
  if (p.box) parts.push(`box ${p.box.join(",")}`);
  return parts.join(" · ");
}

function showResult(job) {
  const box = $("result");
  box.replaceChildren();
  for (const file of job.files) {
    const figure = document.createElement("figure");
    const media = mediaElement(file);
    if (file.kind !== "image") media.preload = "auto";  // the result is watched next: load it whole
    figure.append(media);
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    link.href = file.url;
    link.download = file.name;
    link.textContent = `Download ${file.name}`;
    const side = document.createElement("a");
    side.href = file.sidecar;
    side.textContent = "settings (JSON)";
    caption.append(link, " · ", side);
    figure.append(caption);
    box.append(figure);
  }
}

async function loadGallery() {
  let data;
  try { data = await api("/v1/generations?limit=60"); } catch (e) { return; }
  const list = $("gallery");
  list.replaceChildren();
  for (const job of data.generations) {
    const item = document.createElement("li");
    item.dataset.id = job.id;
    item.dataset.state = job.state;
    item.className = `state-${job.state}`;
    if (job.state === "done" && job.files.length) item.append(mediaElement(job.files[0]));
    const prompt = document.createElement("p");
    prompt.className = "prompt";
    prompt.textContent = job.prompt || "(no prompt)";
    const meta = document.createElement("p");
    meta.className = "meta";
    const when = new Date(job.timings.created * 1000).toLocaleString();
    meta.textContent = `${describe(job)} · ${job.state}${job.error ? ": " + job.error : ""} · ${when}`;
    item.append(prompt, meta);
    for (const file of job.files) {
      const link = document.createElement("a");
      link.href = file.url;
      link.download = file.name;
      link.textContent = `Download ${file.name}`;
      item.append(link, document.createElement("br"));
    }
    list.append(item);
  }
}

function onTaskChange() {
  const task = model && model.tasks[$("task").value];
  const need = task ? task.input : null;
  $("upload-box").hidden = !need;
  $("upload").required = Boolean(need);
  if (need) {
    $("upload-label").textContent = `Input ${need}`;
    $("upload").accept = ACCEPT[need];
  } else {
    $("upload").value = "";
  }
  $("prompt").disabled = Boolean(task && !task.prompt);
  $("region").hidden = !(task && task.box);
  if (task && task.box) {  // the task's default box: inpainting fills it, outpainting keeps it
    $("region-legend").textContent = $("task").value === "video_outpainting" ? "Box to keep" : "Box to fill";
    BOX.forEach((id, i) => { $(id).value = task.box[i]; });
  }
}

function follow(job) {
  $("job").hidden = false;
  const bar = $("progress");
  const status = $("status");
  const update = (j) => {
    bar.value = j.progress.fraction || 0;
    if (j.state === "queued") status.textContent = `queued${j.queue_position ? ` (position ${j.queue_position})` : ""}`;
    else if (j.state === "running") status.textContent = `running: step ${j.progress.step || 0} of ${j.progress.steps || "?"}`;
    else status.textContent = j.state + (j.error ? `: ${j.error}` : "");
  };
  update(job);
  if (events) events.close();
  events = new EventSource(job.links.events);
  events.onmessage = null;
  const finish = (j) => {
    events.close();
    events = null;
    $("submit").disabled = false;
    if (j.state === "done") { bar.value = 1; showResult(j); } else if (j.state === "failed") showError(j.error || "the job failed");
    loadGallery();
  };
  for (const state of ["queued", "running", "done", "failed", "cancelled"]) {
    events.addEventListener(state, (e) => {
      const j = JSON.parse(e.data);
      update(j);
      if (["done", "failed", "cancelled"].includes(j.state)) finish(j);
    });
  }
  events.onerror = async () => {  // a dropped stream: ask once, then carry on following if still going
    if (!events) return;
    events.close();
    try {
      const j = await api(job.links.self);
      update(j);
      if (["done", "failed", "cancelled"].includes(j.state)) finish(j); else setTimeout(() => follow(j), 1000);
    } catch (e) { showError(e.message); $("submit").disabled = false; }
  };
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("result").replaceChildren();
  const form = new FormData();
  form.append("task", $("task").value);
  form.append("sampler", $("sampler").value);
  if (!$("prompt").disabled) form.append("prompt", $("prompt").value);
  for (const name of SETTINGS) {
    const value = $(name).value.trim();
    if (value !== "") form.append(name, value);
  }
  const task = model.tasks[$("task").value];
  if (task && task.box) form.append("box", BOX.map((id) => $(id).value.trim()).join(","));
  if (task && task.input && $("upload").files.length) form.append(task.input, $("upload").files[0]);
  $("submit").disabled = true;
  try {
    follow(await api("/v1/generations", { method: "POST", body: form }));
    loadGallery();
  } catch (e) {
    showError(e.message);
    $("submit").disabled = false;
  }
}

async function loadModel() {
  try {
    model = await api("/v1/model");
  } catch (e) {
    $("model-line").textContent = "The server needs an API key.";
    showError(e.message);
    return false;
  }
  const select = $("task");
  select.replaceChildren();
  for (const [name, task] of Object.entries(model.tasks)) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = TASK_NAMES[name] || name;
    if (!task.prompt && !task.input) option.textContent += " (no input)";
    select.append(option);
  }
  if (model.tasks.text_to_video_audio) select.value = "text_to_video_audio";
  const c = model.clip;
  $("model-line").textContent = `${model.name || "model"}: ${c.width}x${c.height}, ${c.frames} frames at ${c.fps} fps` +
    (c.sample_rate ? `, sound at ${c.sample_rate} Hz` : "") + `; at most ${model.limits.max_prompt_chars} prompt characters.`;
  onTaskChange();
  return true;
}

async function start() {
  $("generate-form").addEventListener("submit", submit);
  $("task").addEventListener("change", onTaskChange);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("generate-form").requestSubmit();
  });
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    document.cookie = `videopoet_key=${encodeURIComponent($("key").value.trim())}; path=/; SameSite=Strict` +
      (location.protocol === "https:" ? "; Secure" : "");
    showError("");
    if (await loadModel()) { $("key-section").hidden = true; loadGallery(); }
  });
  const health = await api("/v1/health").catch(() => null);
  if (health && health.auth) $("key-section").hidden = false;
  if (await loadModel()) {
    if (health && health.auth) $("key-section").hidden = true;
    loadGallery();
  }
}

start();
