// What the service has loaded: readiness in the header, the model cards' test results.

import { ApiError, request } from "./api.js";
import { $, MODEL_NAMES, el, percent, showError } from "./ui.js";

const RETRY_MS = 2000;

export async function showStatus() {
  const status = $("#status");
  try {
    const ready = await request("/readyz");
    const names = ready.models.map((name) => MODEL_NAMES[name] ?? name).join(", ");
    status.textContent = `Ready on ${ready.device}: ${names}.`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 503) {
      status.textContent = "The service is loading its models…";
      setTimeout(showStatus, RETRY_MS);
    } else {
      status.textContent = "The service is not answering.";
    }
  }
}

function testResult({ kind, test_metrics: metrics }) {
  if (kind === "classifier") return `${percent(metrics.accuracy, 2)} accuracy`;
  const parts = [`${metrics.loss.toFixed(2)} nats per image`];
  if ("bce" in metrics) parts.push(`(BCE ${metrics.bce.toFixed(2)} + KL ${metrics.kl.toFixed(2)})`);
  return parts.join(" ");
}

export async function showModels() {
  const rows = $("#model-rows");
  let models;
  try {
    ({ models } = await request("/models"));
  } catch (error) {
    rows.replaceChildren(
      el("tr", {}, el("td", { colSpan: 4, textContent: "Not available: see the message above." })),
    );
    showError(error);
    return;
  }
  rows.replaceChildren(
    ...models.map((model) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", textContent: MODEL_NAMES[model.name] ?? model.name }),
        el("td", { textContent: model.parameters.toLocaleString("en") }),
        el("td", { textContent: testResult(model) }),
        el("td", { textContent: model.device }),
      ),
    ),
  );
  const loaded = new Set(models.map((model) => model.name));
  for (const option of document.querySelectorAll("#model option, #embed-model option")) {
    option.disabled = !loaded.has(option.value);
  }
  const vae = models.find((model) => model.kind === "autoencoder");
  if (vae) {
    $("#recon-note").textContent =
      `The VAE encodes the image to ${vae.latent_dim} numbers and decodes it again.`;
  }
}
