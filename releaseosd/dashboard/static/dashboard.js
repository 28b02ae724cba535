// releaseosd dashboard: live updates from the daemon's event stream (no polling), actions as
// POSTs with the page's CSRF token, release countdowns. No inline script: the CSP forbids it.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

function flash(text, problem) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.classList.toggle("problem", Boolean(problem));
  box.hidden = false;
}

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await answer.json(); } catch (e) { data = { error: await answer.text() }; }
  if (!answer.ok) throw new Error(data.error || `the daemon answered ${answer.status}`);
  return data;
}

const STALLED_AFTER_SECONDS = 10;

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  const clock = [h, m, s].map((n) => String(n).padStart(2, "0")).join(":");
  return d ? `${d} d ${clock}` : clock;
}

// --- cards -----------------------------------------------------------------------------------

// The latest refresh asked of each card: events come faster than answers, and an answer that
// arrives after a newer one was asked for is older than what that one brings.
const refreshes = new Map();

async function refreshCard(id) {
  const asked = (refreshes.get(id) || 0) + 1;
  refreshes.set(id, asked);
  const answer = await fetch(`/tracks/${encodeURIComponent(id)}/card`, { credentials: "same-origin" });
  const html = answer.ok ? await answer.text() : "";
  if (refreshes.get(id) !== asked) return;
  // Looked up now, after the awaits: another refresh may have put the card in meanwhile.
  const old = document.getElementById(`card-${id}`);
  if (answer.status === 404) { if (old) old.remove(); return; }
  if (!answer.ok) return;
  const holder = document.createElement("div");
  holder.innerHTML = html;  // server-rendered, escaped by the template
  const fresh = holder.firstElementChild;
  const cards = document.getElementById("cards");
  const show = cards ? cards.dataset.show : "";
  if (show && fresh.dataset.group !== show) {
    // It has left the group this list shows (a track that went out, under "on the way").
    if (old) old.remove();
    return;
  }
  if (old) {
    old.replaceWith(fresh);
  } else if (!document.body.dataset.trackPage) {
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    cards.prepend(fresh);
  }
  tick();
}

async function refreshTrackPage() {
  const answer = await fetch(location.pathname, { credentials: "same-origin" });
  if (!answer.ok) return;
  const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const id of ["track-card", "history"]) {
    const mine = document.getElementById(id), theirs = doc.getElementById(id);
    if (mine && theirs) mine.replaceWith(theirs);
  }
  const list = document.querySelector(".checklist"), fresh = doc.querySelector(".checklist");
  if (list && fresh) list.replaceWith(fresh);
  tick();
}

function showProgress(data) {
  const card = document.getElementById(`card-${data.id}`);
  if (!card) return;
  const box = card.querySelector("[data-progress]");
  if (!box) { refreshCard(data.id); return; }
  const bar = box.querySelector("progress");
  bar.max = data.total; bar.value = data.sent;
  box.querySelector(".progress-text").textContent = data.text;
  box.dataset.heard = data.at; box.dataset.amount = data.amount;
}

async function refreshAccount() {
  const box = document.getElementById("account");
  const answer = await fetch("/account", { credentials: "same-origin" });
  if (answer.ok) box.innerHTML = await answer.text();
}

// --- countdowns ------------------------------------------------------------------------------

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-countdown]")) {
    const left = (Date.parse(el.dataset.countdown) - now) / 1000;
    el.textContent = left > 0 ? `in ${duration(left)}` : "due now";
  }
  // An upload reports each MiB it sends: none for this long, and its rate says nothing more.
  for (const box of document.querySelectorAll("[data-progress][data-heard]")) {
    const quiet = (now - Date.parse(box.dataset.heard)) / 1000;
    if (quiet >= STALLED_AFTER_SECONDS) {
      box.querySelector(".progress-text").textContent =
        `${box.dataset.amount} · no progress for ${duration(quiet)}`;
    }
  }
}

// --- actions ---------------------------------------------------------------------------------

function named(button) {
  const link = button.dataset.link ? `, ${button.dataset.link}` : "";
  return `'${button.dataset.title}' (id ${button.dataset.track}${link})`;
}

async function act(button) {
  const action = button.dataset.action, track = button.dataset.track;
  let said;
  if (action === "retry") said = await post("/actions/retry", { track });
  else if (action === "release-now") {
    if (!confirm(`Make ${named(button)} public on SoundCloud now?`)) return;
    said = await post("/actions/release", { track });
  } else if (action === "remove") {
    if (!confirm(`Remove ${named(button)} from releaseosd? What is on SoundCloud stays there.`)) return;
    said = await post("/actions/remove", { track, remote: false });
  } else if (action === "remove-remote") {
    if (!confirm(`Remove ${named(button)} and DELETE it from SoundCloud? This cannot be undone.`)) return;
    said = await post("/actions/remove", { track, remote: true });
  } else if (action === "pause" || action === "resume") {
    said = await post(`/actions/${action}`, {});
    location.reload();
  } else if (action === "connect") {
    const tab = window.open("", "_blank");
    try {
      const { url } = await post("/actions/connect", {});
      if (tab) tab.location = url; else location.assign(url);
      said = { message: "finish the login in the SoundCloud tab" };
    } catch (error) { if (tab) tab.close(); throw error; }
    refreshAccount();
  } else if (action === "disconnect") {
    if (!confirm("Disconnect from SoundCloud? Uploads and releases wait until you connect again.")) return;
    said = await post("/actions/disconnect", {});
    refreshAccount();
  } else return;
  flash(said.message || "done");
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  button.disabled = true;
  act(button).catch((error) => flash(error.message, true)).finally(() => { button.disabled = false; });
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.release-at");
  if (!form) return;
  event.preventDefault();
  // The picker's value is a wall-clock time in the browser's zone (what its label says); it
  // goes with that zone's offset, so a daemon in another zone (a service without the
  // session's TZ, a laptop that travelled) releases at the minute the producer meant.
  const picked = new Date(form.elements.at.value);
  if (Number.isNaN(picked.getTime())) { flash("Pick a date and time first.", true); return; }
  const at = picked.toISOString();
  post("/actions/release", { track: form.dataset.track, at })
    .then((said) => flash(said.message))
    .catch((error) => flash(error.message, true));
});

// --- the live stream -------------------------------------------------------------------------

function listen() {
  const stream = new EventSource("/events");
  stream.addEventListener("hello", () => { document.body.dataset.live = "yes"; });
  stream.addEventListener("track", (event) => {
    const { id } = JSON.parse(event.data);
    if (document.body.dataset.trackPage) {
      if (id === document.body.dataset.trackPage) refreshTrackPage();
    } else refreshCard(id);
  });
  stream.addEventListener("progress", (event) => showProgress(JSON.parse(event.data)));
  stream.addEventListener("account", refreshAccount);
  stream.addEventListener("reload", () => location.reload());
  stream.onerror = () => { document.body.dataset.live = "no"; };
}

refreshAccount();
tick();
setInterval(tick, 1000);
listen();
