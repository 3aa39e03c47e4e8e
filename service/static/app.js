// tracekws page: profiles, enrolment by microphone (with a guide for words of your own and
// their thresholds), version timeline, live detection.
// Plain ES modules, no build step. Every API error is an RFC 9457 problem+json body; the page
// shows its title, detail and code with a hint on what to do (problems.js).

import { Microphone, MicError, Resampler, TARGET_RATE, encodeWav, record, rms, toInt16 } from "./audio.js";
import { describe } from "./problems.js";

const KEY_STORE = "tracekws.apiKey"; // sessionStorage: gone when the tab closes
const PROFILE_STORE = "tracekws.profile";
const KEY_RE = /^[A-Za-z0-9._~+/=-]{16,256}$/;
const SPECIAL = { _unknown_: "unknown", _silence_: "silence" };
const LIVE_SEND_SAMPLES = 1600; // 100 ms of 16 kHz PCM per WebSocket message
// the audio of the last few seconds, so a false detection can be sent back as "_unknown_"
const LIVE_KEEP_SAMPLES = 4 * TARGET_RATE;
const FALSE_BEFORE_S = 1.3; // a detection's clip: this long before the detecting frame...
const FALSE_AFTER_S = 0.2; // ...and this long after it
// a take of a word of your own is consistent with the earlier ones when /adapt's prob_before,
// p(word) of the take against them, is at least ½: where the word would fire (its threshold)
const CONSISTENT = 0.5;

const $ = (id) => document.getElementById(id);
const mic = new Microphone();
const state = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  profiles: [],
  profile: null, // name
  versions: [],
  active: null,
  labels: [],
  detector: null, // GET /profiles/{p}/detector: the thresholds the active version is heard with
  words: null, // GET /profiles/{p}/words: the active version's words of your own
  take: null, // last recording {wav, samples, peak}
  busy: false,
  live: null,
};

// ---- DOM helpers -------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (p) => (p === undefined || p === null ? "–" : Number(p).toFixed(2));
const labelName = (l) => SPECIAL[l] || l;

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.round((t - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const abs = Math.abs(s);
  if (abs < 60) return rtf.format(s, "second");
  if (abs < 3600) return rtf.format(Math.round(s / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}

// ---- messages ----------------------------------------------------------------------------
function dismissLater(el, ms) {
  setTimeout(() => el.remove(), ms);
}

/** Show a problem (problem+json body, or the page's own) as an error message. */
function showProblem(problem, context) {
  const d = describe(problem);
  const box = $("messages");
  // the same problem again replaces the old message instead of stacking
  for (const old of box.querySelectorAll(`.msg[data-code="${CSS.escape(d.code)}"]`)) old.remove();
  const errors = d.errors.map((e) => h("li", {}, `${(e.loc || []).join(".")}: ${e.msg}`));
  const el = h("div", { class: "msg error", dataset: { code: d.code, status: String(d.status) } },
    h("div", { class: "msg-head" },
      h("strong", { class: "msg-title" }, context ? `${context}: ${d.title}` : d.title),
      h("span", { class: "msg-code" }, d.status ? `${d.code} · ${d.status}` : d.code),
      h("button", { class: "msg-close", type: "button", "aria-label": "Dismiss",
                    onclick: () => el.remove() }, "×")),
    d.detail ? h("p", { class: "msg-detail" }, d.detail) : null,
    errors.length ? h("ul", { class: "msg-errors" }, errors) : null,
    d.hint ? h("p", { class: "msg-hint" }, d.hint) : null);
  box.prepend(el);
  while (box.children.length > 4) box.lastChild.remove();
  if (d.code === "unauthorized") {
    $("key-form").classList.add("attention");
    $("api-key").focus();
  }
  return el;
}

function showInfo(text) {
  for (const old of $("messages").querySelectorAll(".msg.info")) old.remove();
  const el = h("div", { class: "msg info" },
    h("div", { class: "msg-head" }, h("span", {}, text),
      h("button", { class: "msg-close", type: "button", "aria-label": "Dismiss",
                    onclick: () => el.remove() }, "×")));
  $("messages").prepend(el);
  dismissLater(el, 6000);
}

function clearProblems(...codes) {
  for (const el of $("messages").querySelectorAll(".msg.error")) {
    if (!codes.length || codes.includes(el.dataset.code)) el.remove();
  }
}

// ---- API ---------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(problem) {
    super(problem.title || "request failed");
    this.problem = problem;
  }
}

// relative to the page, so the service also works behind a proxy under a path prefix
const apiUrl = (path) => new URL(path.replace(/^\//, ""), document.baseURI);

async function api(method, path, { query, body, type } = {}) {
  const url = apiUrl(path);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json, application/problem+json" };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (type) headers["Content-Type"] = type;
  let res;
  try {
    res = await fetch(url, { method, headers, body });
  } catch (e) {
    throw new ApiError({ code: "network", title: "Service unreachable", detail: String(e.message || e) });
  }
  const ctype = res.headers.get("content-type") || "";
  let data = null;
  if (res.status !== 204 && ctype.includes("json")) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) {
    throw new ApiError(data && typeof data === "object" ? { status: res.status, ...data }
      : { status: res.status, title: res.statusText || `HTTP ${res.status}`,
          detail: `${method} ${url.pathname} answered ${res.status}` });
  }
  if (state.key) $("key-form").classList.remove("attention");
  return data;
}

/** Run an action; show its problem if it fails. Returns the result or undefined. */
async function attempt(context, fn) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError) {
      showProblem(e.problem, context);
      const code = e.problem.code;
      if (code === "version-conflict" || code === "unknown-version" || code === "corrupt-weights"
          || code === "unknown-word") {
        loadVersions();
      } else if (code === "unknown-profile") {
        loadProfiles();
      }
    } else if (e instanceof MicError) {
      showProblem({ code: "microphone", title: "Microphone unavailable", detail: e.message }, context);
    } else {
      console.error(e);
      showProblem({ code: "internal-error", title: "Unexpected error in the page", detail: String(e) }, context);
    }
    return undefined;
  }
}

// ---- API key -----------------------------------------------------------------------------
function renderKey() {
  const chip = $("key-state");
  chip.textContent = state.key ? `key …${state.key.slice(-4)}` : "no API key";
  chip.classList.toggle("ok", Boolean(state.key));
  $("key-forget").hidden = !state.key;
  $("api-key").placeholder = state.key ? "replace the API key" : "API key (if needed)";
}

function setupKey() {
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (!KEY_RE.test(key)) {
      showProblem({ code: "unauthorized", title: "That is not an API key",
        detail: "API keys are 16–256 characters of A–Z a–z 0–9 . _ ~ + / = -" });
      return;
    }
    state.key = key;
    sessionStorage.setItem(KEY_STORE, key);
    $("api-key").value = "";
    $("key-form").classList.remove("attention");
    clearProblems("unauthorized", "forbidden-profile");
    renderKey();
    showInfo("API key saved for this tab.");
    loadProfiles();
  });
  $("key-forget").addEventListener("click", () => {
    state.key = "";
    sessionStorage.removeItem(KEY_STORE);
    renderKey();
    loadProfiles();
  });
  renderKey();
}

// ---- profiles ----------------------------------------------------------------------------
const currentProfile = () => state.profiles.find((p) => p.name === state.profile);

async function loadProfiles(select) {
  const data = await attempt("Loading profiles", () => api("GET", "/profiles"));
  if (!data) return;
  state.profiles = data.profiles;
  const sel = $("profile-select");
  sel.replaceChildren();
  for (const p of state.profiles) {
    const text = p.read_only ? `${p.name} — shipped model, read-only`
      : `${p.name} — v${p.active_version} of ${p.versions}`;
    sel.append(h("option", { value: p.name }, text));
  }
  if (!state.profiles.length) {
    sel.append(h("option", { value: "" }, "no profile visible: enter an API key"));
  }
  const names = state.profiles.map((p) => p.name);
  const stored = localStorage.getItem(PROFILE_STORE);
  const pick = [select, state.profile, stored].find((n) => n && names.includes(n))
    || names.find((n) => n !== "default") || names[0] || null;
  sel.value = pick || "";
  await setProfile(pick);
}

async function setProfile(name) {
  state.profile = name;
  if (name) localStorage.setItem(PROFILE_STORE, name);
  const p = currentProfile();
  $("profile-info").textContent = !p ? ""
    : p.read_only ? "The model shipped with the service. Create a profile to personalise it."
      : `Created ${ago(p.created_at)} · ${p.versions} version${p.versions === 1 ? "" : "s"}` +
        (p.store_audio ? " · keeps recordings" : " · recordings are not kept");
  $("versions-profile").textContent = name ? `of ${name}` : "";
  state.words = null; // another profile's words must not guide this one's enrolment
  renderWords();
  updateEnrol();
  await loadVersions();
}

function setupProfiles() {
  $("profile-select").addEventListener("change", (e) => setProfile(e.target.value));
  $("refresh-profiles").addEventListener("click", () => loadProfiles());
  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = $("new-profile").value.trim();
    const created = await attempt("Creating the profile", () => api("POST", "/profiles", {
      type: "application/json",
      body: JSON.stringify({ name, store_audio: $("store-audio").checked }),
    }));
    if (!created) return;
    $("new-profile").value = "";
    showInfo(`Profile ${created.name} created from the shipped model.`);
    await loadProfiles(created.name);
  });
}

// ---- versions ----------------------------------------------------------------------------
async function loadVersions() {
  const list = $("timeline");
  if (!state.profile) {
    list.replaceChildren(h("li", { class: "empty muted" }, "Choose a profile."));
    return;
  }
  const profile = state.profile;
  const data = await attempt("Loading versions", () =>
    api("GET", `/profiles/${encodeURIComponent(profile)}/versions`));
  if (!data || profile !== state.profile) return;
  state.versions = data.versions;
  state.active = data.active_version;
  const active = state.versions.find((v) => v.active) || state.versions[state.versions.length - 1];
  state.labels = active ? active.labels || [] : [];
  $("label-list").replaceChildren(...state.labels.filter((l) => !SPECIAL[l])
    .map((l) => h("option", { value: l })));
  renderTimeline();
  await loadWords(profile);
  await loadDetector(profile);
  if (!state.live) buildBars(state.labels, state.detector ? state.detector.thresholds : {});
  syncLive();
}

// ---- detection thresholds of the active version -----------------------------------------
const SOURCE_TEXT = { version: "this version's own", model: "calibrated with the model",
                      default: "the service's default", request: "this session's" };

async function loadDetector(profile) {
  const d = await attempt("Loading the thresholds", () =>
    api("GET", `/profiles/${encodeURIComponent(profile)}/detector`));
  if (profile !== state.profile) return;
  state.detector = d || null;
  renderDetector();
}

function renderDetector() {
  const d = state.detector;
  const p = currentProfile();
  const info = $("detector-info");
  if (!d) { info.textContent = ""; $("detector").hidden = true; return; }
  const words = Object.entries(d.thresholds).map(([w, t]) => `${w} ${fmt(t)}`).join(" · ");
  const source = (part) => SOURCE_TEXT[d.sources[part]] || d.sources[part];
  info.textContent = `Thresholds of v${d.version} (${source("thresholds")}): ${words} · ` +
    `quiet ${d.refractory} s after a detection` +
    (d.sources.refractory === d.sources.thresholds ? "" : ` (${source("refractory")})`);
  const readOnly = !p || p.read_only;
  $("detector").hidden = readOnly;
  $("detector-fields").replaceChildren(...Object.entries(d.thresholds).map(([w, t]) =>
    h("label", {}, w, h("input", { type: "number", min: "0.01", max: "1", step: "any",
                                   value: String(t), required: true, dataset: { word: w } }))));
  $("refractory").value = String(d.refractory);
}

async function saveDetector(ev) {
  ev.preventDefault();
  const profile = state.profile;
  const thresholds = {};
  for (const input of $("detector-fields").querySelectorAll("input")) {
    thresholds[input.dataset.word] = Number(input.value);
  }
  const body = { thresholds, refractory: Number($("refractory").value) };
  const res = await attempt("Saving the thresholds", () => api("PUT",
    `/profiles/${encodeURIComponent(profile)}/detector`,
    { type: "application/json", body: JSON.stringify(body) }));
  if (!res) return;
  showInfo(`v${res.version} of ${profile}: thresholds saved.`);
  $("detector").open = false;
  await loadProfiles(profile);
}

// the versions PUT/DELETE /profiles/{p}/words/{w} make (service/store.py), by rule
const WORD_RULES = {
  "word-threshold": (w) => `threshold of ${w}`,
  "word-removed": (w) => `− ${w}`,
};

function renderTimeline() {
  const p = currentProfile();
  const readOnly = !p || p.read_only;
  const items = [...state.versions].reverse().map((v) => {
    const m = v.metrics || {};
    const base = v.parent === null || v.parent === undefined;
    const tuned = v.rule === "detector"; // only the detection settings changed
    const wordChange = WORD_RULES[v.rule]; // a word of your own: its threshold, or removed
    const what = base ? h("span", { class: "chip base" }, "shipped model")
      : tuned ? h("span", { class: "chip detector" }, "thresholds")
        : wordChange ? h("span", { class: "chip detector" }, wordChange(v.label))
          : h("span", { class: "chip word" }, `+ ${labelName(v.label)}`);
    const meta = [];
    if (wordChange) {
      meta.push(`from v${v.parent}`, m.threshold_after === undefined
        ? `had threshold ${fmt(m.threshold_before)}`
        : `threshold ${fmt(m.threshold_before)} → ${fmt(m.threshold_after)}`);
    } else if (tuned) {
      const own = v.detector || {};
      meta.push(`from v${v.parent}`, ...Object.entries(own.thresholds || {}).map(([w, t]) => `${w} ${fmt(t)}`));
      if (own.refractory !== undefined) meta.push(`quiet ${own.refractory} s`);
    } else if (!base) {
      meta.push(`from v${v.parent}`, v.rule);
      if (m.utterances !== undefined) meta.push(`${m.utterances} utterance${m.utterances === 1 ? "" : "s"}`);
      if (m.prob_before !== undefined) meta.push(`p(${labelName(v.label)}) ${fmt(m.prob_before)} → ${fmt(m.prob_after)}`);
    } else {
      meta.push(`${(v.labels || []).length} classes`);
    }
    if (v.sha256) meta.push(`sha ${v.sha256.slice(0, 8)}`);
    const action = v.active ? h("span", { class: "badge active" }, "active")
      : readOnly ? null
        : h("button", { type: "button", class: "btn small activate",
                        title: `Make v${v.version} the active version`,
                        onclick: () => activate(v.version) },
          v.version < state.active ? "Roll back here" : "Activate");
    return h("li", { class: `tl-item${v.active ? " active" : ""}`, dataset: { version: String(v.version) } },
      h("span", { class: "tl-dot", "aria-hidden": "true" }),
      h("div", { class: "tl-body" },
        h("div", { class: "tl-head" },
          h("strong", { class: "tl-v" }, `v${v.version}`), what,
          m.new_label ? h("span", { class: "chip new" }, "new word") : null,
          h("time", { datetime: v.created_at, title: v.created_at }, ago(v.created_at))),
        h("div", { class: "tl-meta muted small" },
          meta.map((m, i) => [i ? " · " : null, h("span", {}, m)]))),
      action);
  });
  $("timeline").replaceChildren(...(items.length ? items : [h("li", { class: "empty muted" }, "No versions.")]));
}

async function activate(version) {
  const res = await attempt(`Activating v${version}`, () => api("POST",
    `/profiles/${encodeURIComponent(state.profile)}/versions/${version}/activate`));
  if (!res) return;
  showInfo(`v${res.active_version} of ${res.profile} is active again (was v${res.previous_version}).`);
  await loadProfiles(state.profile);
}

// ---- enrolment ---------------------------------------------------------------------------
function updateEnrol() {
  const p = currentProfile();
  const readOnly = !p || p.read_only;
  const label = $("label").value.trim();
  $("send").disabled = state.busy || readOnly || !state.take || !label;
  $("upload").disabled = state.busy || readOnly;
  $("record").disabled = state.busy;
  $("enrol-note").textContent = !p ? "Choose a profile first."
    : readOnly ? "'default' cannot learn: create a profile (step 1) first."
      : !label ? "Type the word you will say." : !state.take ? "Record the word, then teach it." : "";
  renderGuide();
}

async function doRecord() {
  if (state.busy) return;
  const seconds = Number($("duration").value);
  state.busy = true;
  updateEnrol();
  const btn = $("record");
  btn.classList.add("on");
  $("enrol-card").classList.add("recording");
  btn.lastChild.textContent = " Recording…";
  $("rec-progress").style.width = "0%";
  try {
    const take = await attempt("Recording", () => record(mic, seconds, (f, level) => {
      $("rec-progress").style.width = `${(f * 100).toFixed(1)}%`;
      $("rec-level").style.width = `${levelPercent(level)}%`;
    }));
    if (!take) return;
    state.take = take;
    const audio = $("preview");
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(take.wav);
    audio.hidden = false;
    const db = take.peak > 0 ? (20 * Math.log10(take.peak)).toFixed(0) : "-∞";
    $("rec-info").textContent = `${seconds} s, 16 kHz mono (from ${mic.lastRate || "?"} Hz), peak ${db} dBFS` +
      (take.peak < 0.02 ? " — very quiet: speak closer to the microphone" : "");
    $("rec-info").classList.toggle("warn", take.peak < 0.02);
  } finally {
    state.busy = false;
    btn.classList.remove("on");
    $("enrol-card").classList.remove("recording");
    btn.lastChild.textContent = " Record";
    $("rec-level").style.width = "0%";
    $("rec-progress").style.width = "0%";
    updateEnrol();
  }
}

function levelPercent(level) {
  const db = 20 * Math.log10(Math.max(level, 1e-6));
  return Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
}

async function teach(blob, type, source) {
  const label = $("label").value.trim();
  if (!label) {
    showProblem({ code: "invalid-label", title: "No word given", detail: "Type the word the recording says first." });
    return;
  }
  state.busy = true;
  updateEnrol();
  $("send").textContent = "Teaching…";
  const profile = state.profile;
  const word = ownWord(); // a word of your own: the take is checked against the earlier ones
  const before = word === null ? 0 : recordingsOf(word);
  try {
    const res = await attempt(`Teaching "${label}"`, () => api("POST", "/adapt", {
      query: { profile, label }, body: blob, type,
    }));
    if (!res) return;
    clearProblems();
    if (word !== null) showWordCheck(word, before, res);
    const box = $("enrol-result");
    box.replaceChildren(...[
      h("strong", {}, `v${res.version} learned “${label}”`),
      res.new_label ? h("span", { class: "chip new" }, "new word") : null,
      h("span", { class: "muted small" },
        `from v${res.parent} ${source} · ${res.utterances} utterance${res.utterances === 1 ? "" : "s"} · ` +
        `p(${labelName(label)}) ${fmt(res.prob_before)} → ${fmt(res.prob_after)} · ${Math.round(res.latency_ms)} ms`),
    ].filter(Boolean));
    box.hidden = false;
    await loadProfiles(profile);
  } finally {
    state.busy = false;
    $("send").textContent = "Teach it";
    updateEnrol();
  }
}

function setupEnrol() {
  $("label").addEventListener("input", updateEnrol);
  $("record").addEventListener("click", doRecord);
  $("send").addEventListener("click", () => state.take && teach(state.take.wav, "audio/wav", "(recording)"));
  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (file) await teach(file, file.type || "application/octet-stream", `(${file.name})`);
  });
}

// ---- words of your own (GET/PUT/DELETE /profiles/{p}/words) --------------------------------
const wordUrl = (profile, word) =>
  `/profiles/${encodeURIComponent(profile)}/words${word === undefined ? "" : `/${encodeURIComponent(word)}`}`;

async function loadWords(profile) {
  const w = await attempt("Loading your words", () => api("GET", wordUrl(profile)));
  if (profile !== state.profile) return;
  state.words = w || null;
  renderWords();
  renderGuide();
}

/** The typed word when /adapt will enrol it as a word of your own (not a class of the active
 * version, and the model has a word bank), else null. Labels are compared in NFC, as the
 * service stores them. */
function ownWord() {
  const label = $("label").value.trim().normalize("NFC");
  if (!label || !state.words || !state.words.enrols_words || state.labels.includes(label)) return null;
  return label;
}

const recordingsOf = (word) => state.words?.words.find((w) => w.word === word)?.recordings ?? 0;

/** The enrolment guide for a word of your own: how many recordings it has of how many. */
function renderGuide() {
  const word = ownWord();
  $("word-guide").hidden = word === null;
  if (word === null) return;
  const target = state.words.recommended_recordings;
  const n = recordingsOf(word);
  $("word-guide-word").textContent = word;
  for (const el of document.querySelectorAll(".word-target")) el.textContent = String(target);
  const count = $("word-count");
  count.textContent = n >= target ? `${n} recordings: enough` : `${n} of ${target} recordings`;
  count.classList.toggle("ok", n >= target);
  const check = $("word-check");
  if (check.dataset.word !== word) check.hidden = true; // it was about another word
}

/** After a take of ``word`` (``before``: its recordings until then): the consistency check. */
function showWordCheck(word, before, res) {
  const check = $("word-check");
  let text;
  let kind;
  if (before === 0) {
    kind = "first";
    text = `Recording 1 of “${word}” kept. It has nothing to compare with yet: record it again.`;
  } else if (res.prob_before >= CONSISTENT) {
    kind = "ok";
    text = `Recording ${before + 1}: consistent with your earlier recordings ` +
      `(p ${fmt(res.prob_before)}).`;
  } else {
    kind = "bad";
    text = `Recording ${before + 1} does not sound like your earlier recordings ` +
      `(p ${fmt(res.prob_before)}): record again, the same word the same way. ` +
      `To drop this take, roll back to v${res.parent}.`;
  }
  if (res.utterances > 1) {
    text += ` It held ${res.utterances} utterances: say the word once per take.`;
  }
  check.textContent = text;
  check.dataset.word = word;
  check.className = `word-check small ${kind}`;
  check.hidden = false;
}

/** "Your words": each word of the active version with its recordings and threshold. */
function renderWords() {
  const w = state.words;
  const box = $("words");
  box.hidden = !w || !w.enrols_words;
  if (box.hidden) return;
  const p = currentProfile();
  const readOnly = !p || p.read_only;
  $("words-range").textContent = `Default ${w.default_threshold}, at most ${w.max_threshold}.`;
  const items = w.words.map((x) => {
    const input = h("input", { type: "number", min: "0.01", max: String(w.max_threshold),
                               step: "0.01", value: String(x.threshold), disabled: readOnly,
                               "aria-label": `Threshold of ${x.word}` });
    return h("li", { class: "word-item", dataset: { word: x.word } },
      h("span", { class: "word-name" }, x.word),
      h("span", { class: "muted small" },
        `${x.recordings} recording${x.recordings === 1 ? "" : "s"}`),
      h("label", { class: "word-threshold small muted" }, "threshold", input),
      readOnly ? null : h("button", { type: "button", class: "btn small word-save",
                                      onclick: () => saveWordThreshold(x.word, input) }, "Save"),
      readOnly ? null : h("button", { type: "button", class: "btn small ghost word-remove",
                                      onclick: () => removeWord(x.word) }, "Remove"));
  });
  $("word-list").replaceChildren(...(items.length ? items
    : [h("li", { class: "empty muted small" },
      "None yet: type a word the model does not know above, then record and teach it.")]));
}

async function saveWordThreshold(word, input) {
  const profile = state.profile;
  const was = state.active;
  // the service checks the number (422 naming the field): one place decides what is allowed
  const res = await attempt(`Saving the threshold of “${word}”`, () => api("PUT",
    wordUrl(profile, word), { type: "application/json",
                              body: JSON.stringify({ threshold: Number(input.value) }) }));
  if (!res) return;
  const now = res.words.find((x) => x.word === word);
  showInfo(res.version === was ? `“${word}” already has threshold ${now.threshold}.`
    : `v${res.version} of ${profile}: “${word}” now fires below ${now.threshold}.`);
  await loadProfiles(profile);
}

async function removeWord(word) {
  const profile = state.profile;
  const was = state.active;
  if (!window.confirm(`Remove “${word}” from ${profile}? This makes a new version without it; ` +
                      `v${was} and older keep it (roll back to bring it back).`)) return;
  const res = await attempt(`Removing “${word}”`, () => api("DELETE", wordUrl(profile, word)));
  if (!res) return;
  showInfo(`v${res.version} of ${profile}: “${word}” removed (v${was} still has it).`);
  await loadProfiles(profile);
}

// ---- live detection ----------------------------------------------------------------------
/** The threshold a bar's word is heard with (``thresholds``: word → threshold). */
const thresholdOf = (thresholds, label) => (thresholds && label in thresholds ? thresholds[label] : null);

function thresholdMark(threshold) {
  const el = h("div", { class: "bar-thr", title: `threshold ${threshold}` });
  el.style.left = `${threshold * 100}%`; // CSSOM, not a style attribute: the CSP forbids those
  return el;
}

function buildBars(labels, thresholds) {
  const order = [...labels.filter((l) => !SPECIAL[l]), ...labels.filter((l) => SPECIAL[l])];
  $("bars").replaceChildren(...order.map((l) => {
    const t = SPECIAL[l] ? null : thresholdOf(thresholds, l);
    return h("div", { class: `bar-row${SPECIAL[l] ? " other" : ""}`, dataset: { label: l } },
      h("span", { class: "bar-label", title: l }, labelName(l)),
      h("div", { class: "bar" },
        h("div", { class: "bar-fill" }),
        t === null ? null : thresholdMark(t)),
      h("span", { class: "bar-val" }, "0.00"));
  }));
}

function updateBars(probs, thresholds) {
  for (const row of $("bars").children) {
    const p = probs[row.dataset.label];
    if (p === undefined) continue;
    row.querySelector(".bar-fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".bar-val").textContent = fmt(p);
    const t = thresholdOf(thresholds, row.dataset.label);
    row.classList.toggle("over", !row.classList.contains("other") && t !== null && p > t);
  }
}

/** The samples heard around a detection at ``time`` seconds into the stream (what is still
 * in the live ring), or null. */
function detectionClip(live, time) {
  const end = Math.round((time + FALSE_AFTER_S) * TARGET_RATE);
  const start = Math.round((time - FALSE_BEFORE_S) * TARGET_RATE);
  const first = live.heard - live.ring.length; // stream index of ring[0]
  const a = Math.max(start, first) - first;
  const b = Math.min(end, live.heard) - first;
  return b - a >= 0.5 * TARGET_RATE ? live.ring.slice(a, b) : null;
}

/** "That was not a keyword": teach the clip around a false detection as ``_unknown_``. */
async function notAKeyword(li, clip, label, profile) {
  const btn = li.querySelector(".det-wrong");
  btn.disabled = true;
  btn.textContent = "Teaching…";
  const res = await attempt(`Teaching that “${labelName(label)}” was a false detection`,
    () => api("POST", "/adapt", { query: { profile, label: "_unknown_" }, body: encodeWav(clip),
                                  type: "audio/wav" }));
  if (!res) {
    btn.disabled = false;
    btn.textContent = "Not a keyword";
    return;
  }
  btn.textContent = `taught (v${res.version})`;
  li.classList.add("taught");
  showInfo(`v${res.version}: learned that this sound is not “${labelName(label)}” ` +
           `(p(unknown) ${fmt(res.prob_before)} → ${fmt(res.prob_after)}).`);
  await loadProfiles(profile);
}

function addDetection(d, live) {
  const list = $("detections");
  list.querySelector(".empty")?.remove();
  const clip = live && !SPECIAL[d.label] ? detectionClip(live, d.time) : null;
  const li = h("li", { class: "det", dataset: { label: d.label } },
    h("span", { class: "det-label" }, labelName(d.label)),
    h("span", { class: "det-p" }, fmt(d.probability)),
    h("span", { class: "det-t muted" }, `at ${d.time.toFixed(2)} s`),
    h("time", { class: "muted" }, new Date().toLocaleTimeString()),
    clip ? h("button", { class: "det-wrong small", type: "button",
                         title: "Nobody said it: teach this profile that the sound is not a keyword" },
             "Not a keyword") : null);
  if (clip) li.querySelector(".det-wrong").addEventListener("click", () => notAKeyword(li, clip, d.label, live.profile));
  list.prepend(li);
  while (list.children.length > 30) list.lastChild.remove();
  const row = $("bars").querySelector(`.bar-row[data-label="${CSS.escape(d.label)}"]`);
  if (row) {
    row.classList.remove("hit");
    void row.offsetWidth; // restart the flash animation
    row.classList.add("hit");
  }
}

function setLiveUi(on, text) {
  const btn = $("live-toggle");
  btn.textContent = on ? "■ Stop" : "▶ Start listening";
  btn.classList.toggle("stop", on);
  $("live-card").classList.toggle("on", on);
  if (text !== undefined) $("live-status").textContent = text;
}

function startLive() {
  if (state.live || !state.profile) return;
  // empty: each word's own threshold (the version's, see renderDetector); a number: one for all
  const override = $("threshold").value.trim();
  const threshold = override === "" ? null : Number(override);
  if (threshold !== null && !(threshold > 0 && threshold <= 1)) {
    showProblem({ code: "validation-error", title: "Invalid threshold", detail: "The threshold is a number in (0, 1], or empty for each word's own." });
    return;
  }
  const query = new URLSearchParams({ profile: state.profile, posteriors: "true" });
  if (threshold !== null) query.set("threshold", threshold);
  const url = apiUrl("/stream");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = query;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  // the key goes in the first message, never in the URL (URLs end up in logs)
  const key = state.key;
  ws.onopen = () => { if (key) ws.send(JSON.stringify({ type: "auth", token: key })); };
  const live = { ws, thresholds: {}, profile: state.profile, version: null, unsubscribe: null, stopped: false, failed: false,
                 resampler: null, pending: [], pendingN: 0,
                 ring: new Float32Array(0), heard: 0 /* 16 kHz samples sent so far */ };
  state.live = live;
  setLiveUi(true, "Connecting…");

  ws.onmessage = async (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === "ready") {
      live.thresholds = msg.thresholds;
      live.version = msg.version;
      buildBars(msg.labels, msg.thresholds);
      const how = msg.sources.thresholds === "request" ? `threshold ${msg.threshold} for every word`
        : "each word's own threshold";
      setLiveUi(true, `Listening with ${msg.profile} v${msg.version} · ${how}`);
      $("live-card").dataset.version = String(msg.version);
      const unsubscribe = await attempt("Live detection", () => mic.subscribe((chunk, rate) => onAudio(live, chunk, rate)));
      if (!unsubscribe) { stopLive(); return; }
      if (live.stopped) { unsubscribe(); return; }
      live.unsubscribe = unsubscribe;
    } else if (msg.type === "posteriors") {
      updateBars(msg.probabilities, live.thresholds);
    } else if (msg.type === "detection") {
      addDetection(msg, live);
    } else if (msg.type === "error") {
      live.failed = true;
      showProblem(msg.problem, "Live detection");
    }
  };
  ws.onclose = (ev) => {
    if (!live.stopped && !live.failed) {
      showProblem({ code: "stream-closed", title: "Live connection closed",
        detail: ev.code === 1006 ? "The connection dropped (is the service running?)."
          : `The service closed the stream (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).` });
    }
    if (state.live === live) stopLive();
  };
}

function onAudio(live, chunk, rate) {
  if (live.stopped || live.ws.readyState !== WebSocket.OPEN) return;
  live.level = Math.max(rms(chunk), (live.level || 0) * 0.85); // fast attack, slow decay
  $("live-level").style.width = `${levelPercent(live.level)}%`;
  live.resampler = live.resampler || new Resampler(rate, TARGET_RATE);
  const samples = live.resampler.push(chunk);
  keep(live, samples);
  const pcm = toInt16(samples);
  live.pending.push(pcm);
  live.pendingN += pcm.length;
  if (live.pendingN < LIVE_SEND_SAMPLES) return;
  const out = new Int16Array(live.pendingN);
  let off = 0;
  for (const p of live.pending) { out.set(p, off); off += p.length; }
  live.pending = [];
  live.pendingN = 0;
  if (live.ws.bufferedAmount < 1 << 20) live.ws.send(out.buffer); // drop audio if the link stalls
}

/** Append to the live ring (the last LIVE_KEEP_SAMPLES samples sent). */
function keep(live, samples) {
  const all = new Float32Array(Math.min(LIVE_KEEP_SAMPLES, live.ring.length + samples.length));
  const old = live.ring.subarray(Math.max(0, live.ring.length + samples.length - LIVE_KEEP_SAMPLES));
  all.set(old, 0);
  all.set(samples.subarray(Math.max(0, samples.length - all.length)), old.length);
  live.ring = all;
  live.heard += samples.length;
}

function stopLive() {
  const live = state.live;
  if (!live) return;
  live.stopped = true;
  state.live = null;
  if (live.unsubscribe) live.unsubscribe();
  if (live.ws.readyState <= WebSocket.OPEN) live.ws.close(1000);
  $("live-level").style.width = "0%";
  setLiveUi(false, "Not listening.");
}

/** Keep the live stream on the chosen profile's active version. */
function syncLive() {
  const live = state.live;
  if (live && (live.profile !== state.profile
               || (live.version !== null && live.version !== state.active))) restartLive();
}

function restartLive() {
  stopLive();
  startLive();
}

function setupLive() {
  $("live-toggle").addEventListener("click", () => (state.live ? stopLive() : startLive()));
  $("threshold").addEventListener("change", () => { if (state.live) restartLive(); });
  $("detector-form").addEventListener("submit", saveDetector);
}

// ---- start -------------------------------------------------------------------------------
setupKey();
setupProfiles();
setupEnrol();
setupLive();
loadProfiles().finally(() => { document.documentElement.dataset.ready = "1"; });
