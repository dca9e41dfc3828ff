// Drawing on canvases: a mask painted over an image, and layout boxes.

function pointerAt(canvas, event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) / box.width * canvas.width, (event.clientY - box.top) / box.height * canvas.height];
}

// A mask at the image's own resolution (black = keep, white = change), painted with the mouse;
// the canvas shows the image with the painted part in translucent red.
export class MaskPainter {
  constructor(canvas, brush) {
    this.canvas = canvas;
    this.brush = brush;
    this.image = null;
    this.painted = false;
    this.mask = document.createElement("canvas");
    this.tint = document.createElement("canvas");
    let last = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (!this.image) return;
      canvas.setPointerCapture(e.pointerId);
      last = pointerAt(canvas, e);
      this.stroke(last, last);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const here = pointerAt(canvas, e);
      this.stroke(last, here);
      last = here;
    });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
  }

  setImage(image) {
    this.image = image;
    for (const c of [this.canvas, this.mask, this.tint]) {
      c.width = image.naturalWidth;
      c.height = image.naturalHeight;
    }
    this.brush.max = Math.max(4, Math.round(Math.max(image.naturalWidth, image.naturalHeight) / 2));
    this.brush.value = Math.max(1, Math.round(Math.max(image.naturalWidth, image.naturalHeight) / 8));
    this.clear();
  }

  clear() {
    const m = this.mask.getContext("2d");
    m.fillStyle = "#000";
    m.fillRect(0, 0, this.mask.width, this.mask.height);
    this.tint.getContext("2d").clearRect(0, 0, this.tint.width, this.tint.height);
    this.painted = false;
    this.draw();
  }

  stroke(from, to) {
    const radius = Number(this.brush.value) / 2;
    for (const [c, colour] of [[this.mask, "#fff"], [this.tint, "#e03131"]]) {
      const ctx = c.getContext("2d");
      ctx.strokeStyle = ctx.fillStyle = colour;
      ctx.lineWidth = radius * 2;
      ctx.lineCap = "round";
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(...to, radius, 0, 2 * Math.PI);
      ctx.fill();
    }
    this.painted = true;
    this.draw();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.image) ctx.drawImage(this.image, 0, 0);
    ctx.globalAlpha = 0.55;
    ctx.drawImage(this.tint, 0, 0);
    ctx.globalAlpha = 1;
  }

  dataURL() {
    return this.mask.toDataURL("image/png");
  }
}

const COLOURS = ["#e03131", "#2f9e44", "#1971c2", "#f08c00", "#9c36b5", "#0c8599", "#e64980", "#5c940d"];

// Boxes drawn by dragging, each with the class chosen when it was drawn; normalised corners.
export class BoxDrawer {
  constructor(canvas, labelSelect, onChange) {
    this.canvas = canvas;
    this.labelSelect = labelSelect;
    this.onChange = onChange;
    this.boxes = [];
    this.maxBoxes = 8;
    let start = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (this.boxes.length >= this.maxBoxes) return;
      canvas.setPointerCapture(e.pointerId);
      start = pointerAt(canvas, e);
    });
    canvas.addEventListener("pointermove", (e) => { if (start) this.draw(start, pointerAt(canvas, e)); });
    canvas.addEventListener("pointerup", (e) => {
      if (!start) return;
      const end = pointerAt(canvas, e);
      const [w, h] = [canvas.width, canvas.height];
      const box = [Math.min(start[0], end[0]) / w, Math.min(start[1], end[1]) / h,
                   Math.max(start[0], end[0]) / w, Math.max(start[1], end[1]) / h].map((v) => Math.min(1, Math.max(0, v)));
      start = null;
      if (box[2] - box[0] > 0.02 && box[3] - box[1] > 0.02) {
        this.boxes.push({ box, label: Number(this.labelSelect.value) });
        this.onChange();
      }
      this.draw();
    });
  }

  clear() {
    this.boxes = [];
    this.onChange();
    this.draw();
  }

  draw(from, to) {
    const ctx = this.canvas.getContext("2d");
    const [w, h] = [this.canvas.width, this.canvas.height];
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    ctx.lineWidth = 2;
    ctx.font = "12px system-ui";
    for (const { box, label } of this.boxes) {
      ctx.strokeStyle = ctx.fillStyle = COLOURS[label % COLOURS.length];
      ctx.strokeRect(box[0] * w, box[1] * h, (box[2] - box[0]) * w, (box[3] - box[1]) * h);
      ctx.fillText(this.labelSelect.options[label]?.text ?? String(label), box[0] * w + 3, box[1] * h + 13);
    }
    if (from && to) {
      ctx.strokeStyle = "#888";
      ctx.strokeRect(from[0], from[1], to[0] - from[0], to[1] - from[1]);
    }
  }

  layout() {
    return { boxes: this.boxes.map((b) => b.box), labels: this.boxes.map((b) => b.label) };
  }
}
