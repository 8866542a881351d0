// The admin API as the status page speaks it: the token (kept in this tab's sessionStorage and
// sent as the bearer header, like every other client), JSON requests whose refusals carry the
// API's own error body, and the server-sent status stream, read with fetch so that it carries
// the same header (EventSource cannot send one).
"use strict";

const TOKEN_KEY = "mgha.token";

/** An error answer of the API: its HTTP status and the body's code and message. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** What the page shows: the code and the API's message, as the API wrote them. */
  describe() {
    return `${this.code}: ${this.message}`;
  }
}

/** What the page shows of any failure: the API's code and message, or the script's message. */
function describeError(e) {
  return e instanceof ApiError ? e.describe() : String(e && e.message ? e.message : e);
}

const api = {
  token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  setToken(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  forget() {
    sessionStorage.removeItem(TOKEN_KEY);
  },

  headers(extra) {
    return Object.assign({ Authorization: `Bearer ${api.token() || ""}` }, extra || {});
  },

  /** The ApiError of a refused response (the API's JSON error body when there is one). */
  async refusal(resp) {
    let code = `http-${resp.status}`;
    let message = resp.statusText || "request refused";
    try {
      const body = await resp.json();
      if (body && body.error) {
        code = body.error.code;
        message = body.error.message;
      }
    } catch (_) {
      // Not JSON (a proxy's page, say): the status line is all there is.
    }
    return new ApiError(resp.status, code, message);
  },

  /** One request; resolves to the JSON answer, rejects with an ApiError. */
  async request(method, path, body) {
    const init = { method, headers: api.headers(), cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "unreachable", `the daemon did not answer (${e.message})`);
    }
    if (!resp.ok) {
      throw await api.refusal(resp);
    }
    return resp.json();
  },

  get(path) {
    return api.request("GET", path);
  },
  post(path, body) {
    return api.request("POST", path, body);
  },

  /**
   * Reads `GET /v1/events` until it ends or `signal` aborts it, calling `onEvent(name, data)`
   * for each event. Resolves when the stream ends; rejects with an ApiError when refused.
   */
  async stream(signal, onOpen, onEvent) {
    const resp = await fetch("/v1/events", {
      headers: api.headers({ Accept: "text/event-stream" }),
      cache: "no-store",
      signal,
    });
    if (!resp.ok) {
      throw await api.refusal(resp);
    }
    onOpen();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) {
            name = line.slice(6).trim();
          } else if (line.startsWith("data:")) {
            data.push(line.slice(5).replace(/^ /, ""));
          }
        }
        // Comment-only blocks are the keep-alives.
        if (data.length > 0) {
          onEvent(name, data.join("\n"));
        }
      }
    }
  },
};
