// The page: pick a model, fill the form, run a job with live progress and previews, collect results.

import { getJSON, initToken, postJSON, streamJob } from "./api.js";
import { Form } from "./form.js";
import { addResult } from "./gallery.js";

const $ = (id) => document.getElementById(id);
const form = new Form();
let models = {};
let running = null; // {id, controller}

function status(text, error = false) {
  $("status-text").textContent = text;
  $("status-text").classList.toggle("error", error);
}

function onEvent(name, data, model) {
  if (name === "queued") {
    running.id = data.id;
    status(data.status === "queued" ? `queued: position ${data.position}` : "starting");
  } else if (name === "progress") {
    $("progress").value = data.progress;
    const eta = data.eta_seconds == null ? "" : `, about ${Math.ceil(data.eta_seconds)} s left`;
    status(`step ${data.step} / ${data.steps}${eta}`);
    if (data.preview) {
      $("preview").src = "data:image/png;base64," + data.preview;
      $("preview").hidden = false;
    }
  } else if (name === "done") {
    $("progress").value = 1;
    $("preview").hidden = true;
    for (const item of data.images) addResult($("gallery"), item, model, (seed) => form.setSeed(seed));
    status(`done: ${data.images.length} image${data.images.length === 1 ? "" : "s"}`);
  } else if (name === "error") {
    status(data.error, true);
  } else if (name === "cancelled") {
    status("cancelled");
  }
}

async function run(event) {
  event.preventDefault();
  if (running) return;
  let body;
  try {
    body = await form.body();
  } catch (err) {
    return status(err.message, true);
  }
  const task = form.model.task;
  running = { id: null, controller: new AbortController() };
  $("run").disabled = true;
  $("cancel").disabled = false;
  $("progress").value = 0;
  $("preview").hidden = true;
  status("sending");
  try {
    await streamJob(`/ldmkit/v1/${task}`, body, (name, data) => onEvent(name, data, body.model),
                    running.controller.signal);
  } catch (err) {
    if (err.name !== "AbortError") status(err.message, true);
  } finally {
    running = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
  }
}

async function cancel() {
  if (!running) return;
  const { id, controller } = running;
  try {
    if (id) await postJSON(`/ldmkit/v1/jobs/${id}/cancel`, {});
  } catch (err) {
    status(err.message, true);
  }
  controller.abort(); // closing the stream cancels the job too
  status("cancelled");
}

async function start() {
  initToken();
  try {
    const list = await getJSON("/ldmkit/v1/models");
    models = Object.fromEntries(list.map((m) => [m.name, m]));
    $("model").replaceChildren(...list.map((m) => new Option(`${m.name} (${m.task})`, m.name)));
    form.configure(list[0]);
  } catch (err) {
    return status(err.message, true);
  }
  $("model").addEventListener("change", () => form.configure(models[$("model").value]));
  $("form").addEventListener("submit", run);
  $("cancel").addEventListener("click", cancel);
  document.body.dataset.ready = "true";
}

start();
