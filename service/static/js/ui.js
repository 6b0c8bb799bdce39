// Small DOM helpers shared by the page's sections.

import { describe } from "./api.js";

export const $ = (selector) => document.querySelector(selector);

/** A new element: `el("img", {src, alt})`, children appended in order. */
export function el(tag, properties = {}, ...children) {
  const element = Object.assign(document.createElement(tag), properties);
  element.append(...children);
  return element;
}

export const pngSource = (base64) => `data:image/png;base64,${base64}`;

export function showError(error) {
  const { headline, detail } = describe(error);
  $("#error-headline").textContent = headline;
  $("#error-detail").textContent = detail;
  $("#error").hidden = false;
}

export function clearError() {
  $("#error").hidden = true;
}

/** `fn` once calls stop for `ms` milliseconds. */
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/**
 * Wraps `task(signal, ...args)`, which updates one part of the page: a newer call aborts an
 * older one still in flight, so an answer never overwrites a newer one; errors are shown.
 * `section` is marked busy meanwhile.
 */
export function latest(section, task) {
  let controller = null;
  return async (...args) => {
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    section.setAttribute("aria-busy", "true");
    try {
      await task(mine.signal, ...args);
    } catch (error) {
      if (error.name !== "AbortError") showError(error);
    } finally {
      if (controller === mine) section.removeAttribute("aria-busy");
    }
  };
}

export const MODEL_NAMES = { mynet: "MyNet", lenet: "LeNet-5", vae: "VAE" };

export const percent = (fraction, digits = 1) => `${(100 * fraction).toFixed(digits)}%`;
