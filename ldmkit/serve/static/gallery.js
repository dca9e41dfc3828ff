// The gallery: each result with its parameters, "reuse seed", and the PNG (with its metadata) to download.

function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

// item: {png: base64, seed, parameters} as the server sends it; onReuse(seed) refills the form's seed.
export function addResult(gallery, item, model, onReuse) {
  const url = "data:image/png;base64," + item.png;
  const params = item.parameters;
  const what = params.task || "sample";
  const summary = [model, what, `seed ${item.seed}`, `${params.width}×${params.height}`,
                   `${params.sampler} ${params.steps} steps`].join(" · ");
  const reuse = element("button", { type: "button", textContent: "reuse seed", className: "reuse" });
  reuse.addEventListener("click", () => onReuse(item.seed));
  const download = element("a", { href: url, download: `${model}-${item.seed}.png`, textContent: "download PNG" });
  const card = element("figure", { className: "card" }, [
    element("img", { src: url, alt: summary }),
    element("figcaption", { className: "meta", textContent: summary }),
    element("details", {}, [element("summary", { textContent: "parameters" }),
                            element("pre", { textContent: JSON.stringify(params, null, 1) })]),
    element("div", { className: "row" }, [reuse, download]),
  ]);
  gallery.prepend(card);
}
