// The batchgate dashboard: polls /ui/overview with the API key from sessionStorage (sent as a
// bearer header, never in a URL) and draws batches, progress, rate, ETA, cost and vendor load.
"use strict";

const KEY = "batchgate-api-key";
const REFRESH_MS = 1500;
const TERMINAL = new Set(["completed", "failed", "expired", "cancelled"]);
const $ = (sel) => document.querySelector(sel);
let timer = null;

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("#board").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

async function refresh() {
  let resp;
  try {
    resp = await fetch("/ui/overview", { headers: headers(), cache: "no-store" });
  } catch (err) {
    $("#error").textContent = "cannot reach the API: " + err;
    return;
  }
  if (resp.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin("That key was refused.");
    return;
  }
  if (!resp.ok) {
    $("#error").textContent = "the API answered " + resp.status;
    return;
  }
  $("#error").textContent = "";
  const data = await resp.json();
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#sign-out").hidden = false;
  drawVendors(data.vendors);
  drawBatches(data.batches, data.now);
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

function drawVendors(vendors) {
  const body = $("#vendors tbody");
  body.replaceChildren();
  for (const [name, v] of Object.entries(vendors)) {
    const used = v.in_flight ?? null;
    const share = used === null ? 0 : Math.min(100, (100 * used) / v.limit);
    body.append(
      el("tr", { "data-vendor": name },
        el("td", {}, name),
        el("td", { class: "slots" }, (used === null ? "?" : used) + " / " + v.limit),
        el("td", {}, el("div", { class: "bar" }, el("span", { class: "running", style: `width:${share}%` }))),
        el("td", {}, v.queued_messages ?? "?"))
    );
  }
}

function fmtDuration(seconds) {
  if (!isFinite(seconds)) return "–";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function progress(b) {
  const total = b.request_counts.total;
  const done = b.request_counts.completed;
  const failed = b.request_counts.failed;
  const running = b.batchgate.in_flight || 0;
  const waiting = Math.max(0, total - done - failed - running);
  const pct = (n) => (total ? (100 * n) / total : 0) + "%";
  const bar = el("div", { class: "bar", title: `${done + failed} of ${total} finished` },
    el("span", { class: "done", style: "width:" + pct(done) }),
    el("span", { class: "failed", style: "width:" + pct(failed) }),
    el("span", { class: "running", style: "width:" + pct(running) }),
    el("span", { class: "queued", style: "width:" + pct(waiting) }));
  const counts = el("div", { class: "counts" },
    el("span", { class: "count-done" }, done), " done · ",
    el("span", { class: "count-failed" }, failed), " failed · ",
    el("span", { class: "count-running" }, running), " running · ",
    waiting, " waiting / ", el("span", { class: "count-total" }, total));
  return [bar, counts];
}

function rateAndEta(b, now) {
  const finished = b.request_counts.completed + b.request_counts.failed;
  const start = b.in_progress_at;
  if (!start || !finished) return "–";
  const end = b.completed_at || b.failed_at || b.cancelled_at || b.expired_at || now;
  const rate = finished / Math.max(1, end - start);
  const left = b.request_counts.total - finished;
  const eta = TERMINAL.has(b.status) ? "" : " · ETA " + fmtDuration(left / rate);
  return rate.toFixed(1) + " lines/s" + eta;
}

function cost(b) {
  const models = b.batchgate.models || {};
  const list = el("ul", { class: "models" });
  for (const [alias, m] of Object.entries(models)) {
    list.append(el("li", {}, `${alias}: ${m.cost_usd}` + (m.unpriced ? " (unpriced)" : "")));
  }
  return [el("div", { class: "cost" }, b.cost_usd), list];
}

async function download(url, filename) {
  const resp = await fetch(url, { headers: headers() });
  if (!resp.ok) {
    $("#error").textContent = "download failed: " + resp.status;
    return;
  }
  const blob = await resp.blob();
  const href = URL.createObjectURL(blob);
  const a = el("a", { href, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}

function fileLink(label, url, filename) {
  return el("a", {
    class: "file", href: "#", "data-file": label,
    onclick: (ev) => { ev.preventDefault(); download(url, filename); },
  }, label);
}

function files(b) {
  const links = [];
  if (b.output_file_id) {
    links.push(fileLink("output", `/v1/files/${b.output_file_id}/content`, `${b.id}_output.jsonl`));
  }
  if (b.error_file_id) {
    links.push(fileLink("errors", `/v1/files/${b.error_file_id}/content`, `${b.id}_error.jsonl`));
  }
  if (!TERMINAL.has(b.status) && b.status !== "validating") {
    links.push(fileLink("finished so far", `/v1/batches/${b.id}/results`, `${b.id}_live.jsonl`));
  }
  return links;
}

function drawBatches(batches, now) {
  const body = $("#batches tbody");
  body.replaceChildren();
  $("#empty").hidden = batches.length > 0;
  for (const b of batches) {
    body.append(
      el("tr", { "data-batch": b.id },
        el("td", { class: "id" }, b.id),
        el("td", { class: "status" }, b.status),
        el("td", {}, ...progress(b)),
        el("td", { class: "rate" }, rateAndEta(b, now)),
        el("td", {}, ...cost(b)),
        el("td", {}, ...files(b)))
    );
  }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  $("#api-key").value = "";
  refresh();
});

$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
});

if (sessionStorage.getItem(KEY)) refresh();
else showLogin("");
