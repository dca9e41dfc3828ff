// The form: which fields a model shows (from GET /ldmkit/v1/models) and the request body they make.

import { BoxDrawer, MaskPainter } from "./canvas.js";

const $ = (id) => document.getElementById(id);
const has = (m, kind) => m.conditions.includes(kind);

// field id -> when it shows, given the model and the form's state
const RULES = {
  "f-prompt": (m) => has(m, "text"),
  "f-negative-prompt": (m) => m.negative === "prompt",
  "f-class": (m) => has(m, "class"),
  "f-negative-class": (m) => m.negative === "class",
  "f-layout": (m) => has(m, "layout"),
  "f-label-map": (m) => has(m, "semantic"),
  "f-unconditional": (m) => m.task === "generate" && m.conditions.length === 0,
  "f-mask": (m, s) => s.image && (m.task === "inpaint" || m.task === "generate"),
  "f-strength": (m, s) => s.image && m.task === "generate",
  "f-karras": (m, s) => m.task === "generate" && m.karras_samplers.includes(s.sampler),
  "f-eta": (m, s) => m.eta_samplers.includes(s.sampler),
  "f-guidance": (m) => m.guidance,
  "f-guidance-interval": (m) => m.task === "generate" && m.guidance,
  "f-cache-interval": (m) => m.task === "generate",
  "f-n": (m) => m.task === "generate",
  "f-batch": (m) => m.task === "generate",
  "f-width": (m, s) => m.task === "generate" && !s.image && !has(m, "semantic"),
  "f-height": (m, s) => m.task === "generate" && !s.image && !has(m, "semantic"),
  "f-tile": (m) => m.task === "upscale",
  "f-overlap": (m) => m.task === "upscale",
  "f-color-fix": (m) => m.task === "upscale",
};
const LEGEND = { generate: "Init image (optional: img2img)", upscale: "Image to upscale", inpaint: "Image to inpaint" };
const BUTTON = { generate: "Generate", upscale: "Upscale", inpaint: "Inpaint" };

function options(select, labels, values = labels) {
  select.replaceChildren(...labels.map((label, i) => new Option(label, values[i])));
}

export class Form {
  constructor() {
    this.model = null;
    this.image = null; // {dataURL, element}
    this.mask = new MaskPainter($("mask-canvas"), $("brush"));
    this.boxes = new BoxDrawer($("layout-canvas"), $("box-class"), () => this.showBoxCount());
    $("sampler").addEventListener("change", () => this.update());
    $("strength").addEventListener("input", () => { $("strength-value").value = $("strength").value; });
    $("seed-random").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2 ** 32); });
    $("mask-clear").addEventListener("click", () => this.mask.clear());
    $("image-clear").addEventListener("click", () => this.setImage(null));
    $("boxes-clear").addEventListener("click", () => this.boxes.clear());
    this.dropZone($("drop"), $("image-input"));
  }

  dropZone(zone, input) {
    zone.addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer.files[0]) this.readImage(e.dataTransfer.files[0]);
    });
    input.addEventListener("change", () => { if (input.files[0]) this.readImage(input.files[0]); input.value = ""; });
  }

  readImage(file) {
    const reader = new FileReader();
    reader.onload = () => {
      const element = new Image();
      element.onload = () => this.setImage({ dataURL: reader.result, element });
      element.src = reader.result;
    };
    reader.readAsDataURL(file);
  }

  setImage(image) {
    this.image = image;
    if (image) this.mask.setImage(image.element);
    $("drop").firstChild.textContent = image
      ? `${image.element.naturalWidth}×${image.element.naturalHeight} image — drop another to replace it `
      : "drop an image here, or click to choose one ";
    this.update();
  }

  configure(model) {
    this.model = model;
    const samplerNow = $("sampler").value;
    options($("sampler"), model.samplers);
    $("sampler").value = model.samplers.includes(samplerNow) ? samplerNow : model.sampler_default;
    if (!this.stepsSet) {  // the server's default once; the user's choice afterwards
      $("steps").value = model.steps_default;
      this.stepsSet = true;
    }
    if (model.classes) {
      options($("class"), model.classes, model.classes.map((_, i) => String(i)));
      options($("negative-class"), ["(none)", ...model.classes], ["", ...model.classes.map((_, i) => String(i))]);
    }
    if (model.layout) {
      const labels = Array.from({ length: model.layout.num_classes }, (_, i) => `class ${i}`);
      options($("box-class"), labels, labels.map((_, i) => String(i)));
      this.boxes.maxBoxes = model.layout.max_boxes;
      this.boxes.clear();
    }
    $("width").placeholder = $("height").placeholder = model.image_size;
    $("width").step = $("height").step = model.size_multiple;
    $("guidance").value = model.guidance_default;
    $("image-legend").textContent = LEGEND[model.task];
    $("run").textContent = BUTTON[model.task];
    $("model-info").textContent = `${model.kind} model · ${model.task} · ${model.image_size} px · ${model.device}`;
    this.update();
  }

  update() {
    const state = { image: Boolean(this.image), sampler: $("sampler").value };
    for (const [id, rule] of Object.entries(RULES)) $(id).hidden = !rule(this.model, state);
    const conditions = $("f-prompt").closest("fieldset");
    conditions.hidden = [...conditions.querySelectorAll(".field")].every((field) => field.hidden);
    $("mask-note").textContent = this.model.task === "inpaint"
      ? "paint the part to fill (white = fill)" : "optional: paint where the image may change";
  }

  showBoxCount() {
    $("box-count").textContent = `${this.boxes.boxes.length} / ${this.boxes.maxBoxes} boxes`;
  }

  setSeed(seed) {
    $("seed").value = seed;
  }

  // The request body for the model's endpoint; throws an Error with what is missing.
  async body() {
    const m = this.model;
    const number = (id) => Number($(id).value);
    const body = { model: m.name, steps: number("steps"), sampler: $("sampler").value, seed: number("seed") };
    if (m.guidance) body.guidance = number("guidance");
    if (!$("f-eta").hidden && $("eta").value !== "") body.eta = number("eta");
    if (m.task !== "generate") {
      if (!this.image) throw new Error(`choose an image to ${m.task}`);
      body.image = this.image.dataURL;
    }
    if (m.task === "upscale") {
      Object.assign(body, { tile: number("tile"), color_fix: $("color-fix").checked });
      if ($("overlap").value !== "") body.overlap = number("overlap");  // (empty: a quarter of the tile)
    }
    if (m.task === "inpaint") {
      if (!this.mask.painted) throw new Error("paint the part to fill on the image first");
      body.mask = this.mask.dataURL();
    }
    if (m.task === "generate") await this.generateFields(m, body, number);
    return body;
  }

  async generateFields(m, body, number) {
    Object.assign(body, { n: number("n"), batch_size: number("batch-size") });
    if (!$("f-karras").hidden && $("karras").checked) body.karras = true;
    const [low, high] = [$("guidance-low").value, $("guidance-high").value];
    if (!$("f-guidance-interval").hidden && (low !== "" || high !== "")) {
      if (low === "" || high === "") throw new Error("give both ends of the guidance interval (noise levels σ), or neither");
      body.guidance_interval = [Number(low), Number(high)];
    }
    if (!$("f-cache-interval").hidden && $("cache-interval").value !== "") body.cache_interval = number("cache-interval");
    if (!$("f-width").hidden && $("width").value) body.width = number("width");
    if (!$("f-height").hidden && $("height").value) body.height = number("height");
    if (has(m, "text")) body.prompt = $("prompt").value;
    if (m.negative === "prompt" && $("negative-prompt").value) body.negative_prompt = $("negative-prompt").value;
    if (has(m, "class")) body.class = Number($("class").value);
    if (m.negative === "class" && $("negative-class").value !== "") body.negative_class = Number($("negative-class").value);
    if (has(m, "layout") && this.boxes.boxes.length) body.layout = this.boxes.layout();
    if (has(m, "semantic")) {
      const file = $("label-map").files[0];
      if (!file) throw new Error("choose a label map (a single-channel PNG of class ids)");
      body.label_map = await new Promise((resolve) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.readAsDataURL(file);
      });
    }
    if (this.image) {
      body.init_image = this.image.dataURL;
      body.strength = number("strength");
      if (this.mask.painted) body.mask = this.mask.dataURL();
    }
  }
}
