// Requests to the service's public API, made exactly as any other client makes them.

const KEY_STORAGE = "fmnist-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** An answer other than 2xx, with the service's `{"error": {code, message}}` when it sent one. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** GET or POST `path`; resolves to parsed JSON, or to a Blob when `as` is "blob". */
export async function request(path, { method = "GET", body, signal, as = "json" } = {}) {
  const headers = { Accept: as === "blob" ? "image/png" : "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(path, { method, body, headers, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "the service did not answer; is it running?");
  }
  if (!response.ok) throw await errorOf(response);
  const result = as === "blob" ? await response.blob() : await response.json();
  signal?.throwIfAborted(); // a newer request replaced this one while its body arrived
  return result;
}

/** POST images as multipart fields: `fields` maps field names to Blobs or Files. */
export function postImages(path, fields, options = {}) {
  const form = new FormData();
  for (const [name, blob] of Object.entries(fields)) form.append(name, blob, blob.name || `${name}.png`);
  return request(path, { ...options, method: "POST", body: form });
}

async function errorOf(response) {
  let code = "http_error";
  let message = response.statusText || "no details";
  try {
    ({ code, message } = (await response.json()).error);
  } catch {
    // not the service's error shape (a proxy in between, say): keep the status text
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

const HEADLINES = {
  400: "The service could not use that input.",
  401: "The service needs an API key: enter it at the top of the page.",
  404: "Not found.",
  413: "That is too large for the service.",
  415: "The service does not accept that kind of file.",
  422: "A setting was not accepted.",
  503: "The service is busy or still starting.",
};

/** A headline and a detail line that a person can act on. */
export function describe(error) {
  if (!(error instanceof ApiError)) {
    return { headline: "Something went wrong on this page.", detail: String(error) };
  }
  if (error.status === 0) return { headline: "Could not reach the service.", detail: error.message };
  let headline = HEADLINES[error.status] ?? `The service answered ${error.status}.`;
  if (error.status === 503 && error.retryAfter) {
    headline = `${headline.slice(0, -1)}; try again in ${error.retryAfter} s.`;
  }
  return { headline, detail: `${error.message} (${error.status} ${error.code})` };
}
