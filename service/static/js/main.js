// The page: one image (a test image, an upload or a drawing) sent to /classify (and /explain),
// /embed and /reconstruct; the VAE's interpolation and samples; the models' cards.

import { apiKey, postImages, setApiKey } from "./api.js";
import { DrawingPad } from "./draw.js";
import { showModels, showStatus } from "./models.js";
import { $, MODEL_NAMES, clearError, debounce, el, latest, percent, pngSource } from "./ui.js";
import { setUpGeneration, setUpInterpolation } from "./vae.js";

const EXAMPLES = "/static/examples";

// The image being looked at: an uploaded or example file, or null for the canvas drawing.
let chosen = null;
let hasImage = false;
let fullUpdatePending = false;

const exampleBlobs = new Map();

async function exampleBlob(file) {
  if (!exampleBlobs.has(file)) {
    const response = await fetch(`${EXAMPLES}/${file}`);
    exampleBlobs.set(file, await response.blob());
  }
  return exampleBlobs.get(file);
}

async function currentImage() {
  return chosen ?? (await pad.toBlob());
}

// The occlusion map of the image classified, while the Explain box is ticked.
const explain = latest($("#explanation"), async (signal) => {
  const model = $("#model").value;
  const file = await currentImage();
  const picture = await postImages(
    `/explain?model=${model}&format=png`,
    { file },
    { signal, as: "blob" },
  );
  const image = $("#explanation-image");
  URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(picture);
  image.alt = `Which pixels made ${MODEL_NAMES[model]} choose its class: red for it, blue against it`;
  $("#explanation").hidden = !$("#explain-toggle").checked;
});

const classify = latest($("#classify"), async (signal) => {
  const model = $("#model").value;
  const file = await currentImage();
  const answer = await postImages(`/classify?model=${model}&top_k=5`, { file }, { signal });
  const [best] = answer.predictions;
  $("#prediction").replaceChildren(
    el("span", { className: "label", textContent: best.label }),
    ` ${percent(best.confidence)}, by ${MODEL_NAMES[answer.model]}`,
  );
  const ood = $("#ood");
  ood.hidden = !best.out_of_distribution;
  ood.textContent =
    "This image is unlike the garments the model was trained on (out-of-distribution score " +
    `${best.ood_score.toFixed(0)}, above ${answer.ood_threshold.toFixed(0)}): the label above ` +
    "is probably meaningless.";
  $("#bars").replaceChildren(
    ...best.top_k.map(({ label, probability }) =>
      el(
        "li",
        {},
        el("span", { className: "name", textContent: label }),
        el("span", { className: "bar", style: `--p: ${probability}` }),
        el("span", { className: "value", textContent: percent(probability) }),
      ),
    ),
  );
  if ($("#explain-toggle").checked) explain();
});

const embed = latest($("#embed"), async (signal) => {
  const model = $("#embed-model").value;
  const file = await currentImage();
  const [answer, picture] = await Promise.all([
    postImages(`/embed?model=${model}`, { file }, { signal }),
    postImages(`/embed?model=${model}&format=png`, { file }, { signal, as: "blob" }),
  ]);
  const [embedding] = answer.embeddings;
  const [x, y] = embedding.coordinates.map((value) => value.toFixed(2));
  const explained = answer.explained_variance_ratio.reduce((sum, value) => sum + value, 0);
  const unlike = embedding.out_of_distribution
    ? " It is unlike the training images: where it lands says little."
    : "";
  $("#coordinates").textContent =
    `${MODEL_NAMES[model]}'s ${answer.layer} vector (${answer.dimension} numbers) lands at ` +
    `(${x}, ${y}) on the training-set map, whose two axes hold ${percent(explained)} of the ` +
    `variance.${unlike}`;
  const map = $("#map");
  URL.revokeObjectURL(map.src);
  map.src = URL.createObjectURL(picture);
  map.alt = `Training-set map of ${MODEL_NAMES[model]} features, one colour per class, with the image at (${x}, ${y})`;
  map.hidden = false;
});

const reconstruct = latest($("#reconstruct"), async (signal) => {
  const file = await currentImage();
  const answer = await postImages("/reconstruct", { file }, { signal });
  const [result] = answer.reconstructions;
  const input = $("#recon-input");
  URL.revokeObjectURL(input.src);
  input.src = URL.createObjectURL(file);
  input.alt = "the image sent";
  Object.assign($("#recon-output"), { src: pngSource(result.png), alt: "its reconstruction" });
  $("#recon-pair").hidden = false;
  const metrics = [
    result.bce != null && `binary cross-entropy ${result.bce.toFixed(1)} nats`,
    result.mse != null && `mean squared error ${result.mse.toFixed(4)}`,
    result.kl != null && `KL ${result.kl.toFixed(1)} nats`,
  ];
  $("#recon-metrics").textContent = `Reconstruction: ${metrics.filter(Boolean).join(", ")}.`;
});

function analyse() {
  if (!hasImage) return;
  clearError();
  classify();
  embed();
  reconstruct();
}

// While the pen moves only the prediction follows; when it lifts, everything does.
const afterDrawing = debounce(() => {
  if (fullUpdatePending) analyse();
  else classify();
  fullUpdatePending = false;
}, 250);

const pad = new DrawingPad($("#pad"), {
  onStroke: () => {
    chosen = null;
    hasImage = true;
    $("#source-note").textContent = "Your drawing.";
    afterDrawing();
  },
  onStrokeEnd: () => {
    fullUpdatePending = true;
    afterDrawing();
  },
});

async function choose(blob, note) {
  chosen = blob;
  hasImage = true;
  $("#source-note").textContent = note;
  analyse();
  let image = null;
  try {
    image = await createImageBitmap(blob);
  } catch {
    // not an image the browser reads: the service's answer says why it cannot read it either
  }
  if (chosen !== blob) return; // drawn on or replaced while it was being decoded
  if (image) pad.show(image);
  else pad.clear();
  image?.close();
}

async function showExamples() {
  const examples = await (await fetch(`${EXAMPLES}/index.json`)).json();
  $("#examples").replaceChildren(
    ...examples.map(({ file, label, test_index: index }) => {
      const button = el(
        "button",
        { type: "button", className: "example", title: `test image ${index}` },
        el("img", { src: `${EXAMPLES}/${file}`, alt: "", width: 28, height: 28 }),
        el("span", { textContent: label }),
      );
      button.addEventListener("click", async () =>
        choose(await exampleBlob(file), `Test image ${index}: ${label}.`),
      );
      return button;
    }),
  );
  return examples;
}

function setUpInput() {
  $("#clear").addEventListener("click", () => {
    pad.clear();
    chosen = null;
    hasImage = false;
    $("#source-note").textContent = "Canvas cleared: draw, upload or pick an image.";
  });
  const fileInput = $("#file");
  fileInput.addEventListener("change", () => {
    const [file] = fileInput.files;
    if (file) choose(file, `Your file ${file.name}.`);
    fileInput.value = ""; // choosing the same file again is a change too
  });
  const input = $("#input");
  input.addEventListener("dragover", (event) => event.preventDefault());
  input.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) choose(file, `Your file ${file.name}.`);
  });
  $("#model").addEventListener("change", () => hasImage && classify());
  $("#explain-toggle").addEventListener("change", ({ target }) => {
    $("#explanation").hidden = !target.checked;
    if (target.checked && hasImage) explain();
  });
  $("#embed-model").addEventListener("change", () => hasImage && embed());
}

function setUpKey() {
  const field = $("#api-key");
  field.value = apiKey();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(field.value.trim());
    $("#key-note").textContent = field.value.trim()
      ? "Key in use, kept in this tab's session storage."
      : "No key in use.";
    clearError();
    showModels();
    analyse();
  });
  $("#error-close").addEventListener("click", clearError);
}

setUpKey();
setUpInput();
showStatus();
showModels();
const examples = await showExamples();
setUpInterpolation(examples, (value) => (value === "" ? currentImage() : exampleBlob(value)));
setUpGeneration();
