// The VAE's interpolation (a strip of frames and a slider through them) and its samples.

import { postImages, request } from "./api.js";
import { $, clearError, el, latest, pngSource } from "./ui.js";

const DEFAULT_ENDS = ["Sneaker", "Ankle boot"];

/** `imageFor(value)` gives the Blob of a select's value: "" is the page's current image. */
export function setUpInterpolation(examples, imageFor) {
  for (const [select, preferred] of [
    [$("#start"), DEFAULT_ENDS[0]],
    [$("#end"), DEFAULT_ENDS[1]],
  ]) {
    select.replaceChildren(
      el("option", { value: "", textContent: "your image" }),
      ...examples.map(({ file, label }) =>
        el("option", { value: file, textContent: label, selected: label === preferred }),
      ),
    );
  }
  let frames = [];
  const slider = $("#frame-slider");
  const show = (index) => {
    slider.value = index;
    Object.assign($("#frame"), { src: pngSource(frames[index]), alt: `frame ${index + 1}` });
    $("#frame-label").textContent = `${index + 1} of ${frames.length}`;
    for (const [i, item] of [...$("#strip").children].entries()) {
      item.firstChild.setAttribute("aria-pressed", String(i === index));
    }
  };
  slider.addEventListener("input", () => show(Number(slider.value)));

  const run = latest($("#interpolate"), async (signal) => {
    const method = new FormData($("#interpolate-form")).get("method");
    const steps = $("#steps").value;
    const [start, end] = await Promise.all([imageFor($("#start").value), imageFor($("#end").value)]);
    const path = `/interpolate?steps=${encodeURIComponent(steps)}&method=${method}`;
    ({ frames } = await postImages(path, { start, end }, { signal }));
    $("#strip").replaceChildren(
      ...frames.map((frame, index) => {
        const button = el(
          "button",
          { type: "button", className: "frame" },
          el("img", { src: pngSource(frame), alt: `frame ${index + 1}`, width: 42, height: 42 }),
        );
        button.addEventListener("click", () => show(index));
        return el("li", {}, button);
      }),
    );
    slider.max = frames.length - 1;
    $("#player").hidden = false;
    show(0);
  });
  $("#interpolate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    run();
  });
}

export function setUpGeneration() {
  const seed = $("#seed");
  const generate = latest($("#generate"), async (signal) => {
    const query = seed.value === "" ? "" : `&seed=${encodeURIComponent(seed.value)}`;
    const answer = await request(`/generate?n=16${query}`, { method: "POST", signal });
    seed.value = answer.seed;
    $("#samples").replaceChildren(
      ...answer.images.map((image, index) =>
        el("img", { src: pngSource(image), alt: `sample ${index + 1}`, width: 56, height: 56 }),
      ),
    );
  });
  $("#generate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    generate();
  });
  $("#new-seed").addEventListener("click", () => {
    seed.value = Math.floor(Math.random() * 2 ** 31);
    clearError();
    generate();
  });
}
