// Talking to the server: the token, JSON calls, and a job's server-sent events over a POST.
//
// The token comes from the URL fragment (/#token=...; browsers never send fragments) or from a
// prompt when the server answers 401; it stays in this tab's sessionStorage only.

const KEY = "ldmkit-token";
let token = null;

export function initToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = sessionStorage.getItem(KEY);
}

function askToken() {
  const given = window.prompt("This server needs its token (ldmkit serve --token ...):");
  if (!given) throw new Error("this server needs a token");
  token = given.trim();
  sessionStorage.setItem(KEY, token);
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// fetch, asking for the token once on 401; a non-2xx answer throws its JSON "error" message.
async function call(path, options = {}) {
  let res = await fetch(path, { ...options, headers: headers() });
  if (res.status === 401) {
    askToken();
    res = await fetch(path, { ...options, headers: headers() });
  }
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}

export async function getJSON(path) {
  return (await call(path)).json();
}

export async function postJSON(path, body) {
  return (await call(path, { method: "POST", body: JSON.stringify(body) })).json();
}

// POST a job and call onEvent(name, data) for each server-sent event until the stream ends.
// Aborting `signal` closes the connection, which cancels the job on the server.
export async function streamJob(path, body, onEvent, signal) {
  const res = await call(path + "?stream=true", { method: "POST", body: JSON.stringify(body), signal });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}
