// pixgrep's web page: plain JavaScript, no build step.
//
// Every search is a "step" kept in a trail. A step knows how to ask the API for one page of
// results: a text query (GET /api/search), an uploaded image (POST /api/search/image) or weighted
// terms (POST /api/search: "more like this" and the refine loop). Clicking a step in the trail
// runs it again; taking a new step after going back drops the steps that came after. A step joins
// the trail (and the browser's history) only once the server has answered it: a query that fails
// shows its error on an empty grid and leaves the trail as it was.
"use strict";

const PAGE = 40;
const REJECT_WEIGHT = 0.5; // how hard the rejected images, together, push the next query away

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), q: $("q"), file: $("file"), uploadLabel: $("upload-label"),
  threshold: $("threshold"), thresholdValue: $("threshold-value"), folder: $("folder"),
  allParts: $("all-parts"), ignoreTone: $("ignore-tone"), dedup: $("dedup"),
  viewerParts: $("viewer-parts"), viewerDuplicates: $("viewer-duplicates"),
  folders: $("folders"), trail: $("trail"), steps: $("trail-steps"), back: $("trail-back"),
  status: $("status"), fusion: $("fusion"), grid: $("grid"), more: $("more"), sentinel: $("sentinel"),
  drop: $("drop-overlay"), viewer: $("viewer"), viewerImg: $("viewer-img"),
  viewerName: $("viewer-name"), viewerDetails: $("viewer-details"), moreLike: $("more-like"),
  rejectOne: $("reject-one"), openFull: $("open-full"), refineForm: $("refine-form"),
  refineText: $("refine-text"), refineHint: $("refine-hint"), close: $("viewer-close"),
  facetsToggle: $("facets-toggle"), facets: $("facets"), activeFilters: $("active-filters"),
  viewerMeta: $("viewer-meta"),
  prev: $("viewer-prev"), next: $("viewer-next"), attached: $("attached"), attachedImg: $("attached-img"),
  attachedName: $("attached-name"), detach: $("attached-remove"), indexing: $("indexing"),
  optionsToggle: $("options-toggle"), header: document.querySelector("header"),
  lang: $("lang"), langOption: $("lang-option"),
};

// Phones and tablets: no hover, no "/" key worth mentioning, no ✕ on every tile.
const touchOnly = () => window.matchMedia("(hover: none) and (pointer: coarse)").matches || window.innerWidth <= 600;

// An access token given once as ?token= is kept by the server in an HttpOnly cookie, which every
// request of this page (API calls and images alike) carries: the page itself never holds it.
async function api(url, options = {}) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `the server answered ${response.status}`);
  }
  return body;
}

// --- state ---------------------------------------------------------------------------------
const state = {
  steps: [],        // {label, kind, ...request fields, rejected: Set of ids carried forward}
  current: -1,
  results: [],      // what the grid shows for the current step
  nextOffset: null,
  loading: false,
  rejected: new Set(), // ids marked "not this" while looking at the current step
  open: null,       // the result shown in the viewer
  generation: 0,    // bumps on every new run, so a late answer to an old one is dropped
  filters: {},      // metadata filters from the facets: place, camera, tag, year
  basePlaceholder: "Describe a picture",
  attached: null,   // the uploaded picture that text typed in the search box is added to
  shown: false,     // whether the grid shows the current step (false after it failed)
  languages: null,  // settles once the language picker is set up (or known not to be needed)
};

// --- metadata filters (facets) ---------------------------------------------------------------
const FILTER_NAMES = { place: "place", camera: "camera", tag: "tag", year: "year" };

function filterParams() {
  const out = {};
  for (const key of ["place", "camera", "tag"]) if (state.filters[key]) out[key] = state.filters[key];
  if (state.filters.year) {
    out.after = String(state.filters.year);
    out.before = String(Number(state.filters.year) + 1);
  }
  return out;
}

function filtersLabel() {
  const parts = Object.entries(state.filters).filter(([, v]) => v).map(([k, v]) => `${FILTER_NAMES[k]} ${v}`);
  return parts.length ? parts.join(" · ") : "all pictures";
}

function setFilter(key, value) {
  if (value === null || value === undefined || value === "") delete state.filters[key];
  else state.filters[key] = String(value);
  renderActiveFilters();
  loadFacets();
  const step = state.current >= 0 ? state.steps[state.current] : null;
  const anyFilter = Object.keys(state.filters).length > 0;
  if (step && !(step.kind === "text" && !step.q)) { run(step, 0); return; }
  if (!anyFilter) { if (step) history.back(); return; }
  if (step) { step.label = filtersLabel(); renderTrail(); run(step, 0); return; }
  addStep({ kind: "text", q: "", label: filtersLabel(), rejected: [] });
}

function renderActiveFilters() {
  const entries = Object.entries(state.filters).filter(([, v]) => v);
  els.activeFilters.hidden = entries.length === 0;
  els.activeFilters.replaceChildren(...entries.map(([key, value]) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chip";
    button.textContent = `${FILTER_NAMES[key]}: ${value} ✕`;
    button.setAttribute("aria-label", `Remove the ${FILTER_NAMES[key]} filter ${value}`);
    button.addEventListener("click", () => setFilter(key, null));
    item.append(button);
    return item;
  }));
}

async function loadFacets() {
  const params = new URLSearchParams({ limit: 12 });
  for (const key of ["place", "camera", "tag"]) if (state.filters[key]) params.set(key, state.filters[key]);
  try {
    renderFacets(await api("/api/facets?" + params));
  } catch (error) {
    els.facets.replaceChildren(Object.assign(document.createElement("p"), { className: "hint", textContent: error.message }));
  }
}

function renderFacets(data) {
  const groups = [
    ["Places", "place", data.places], ["Countries", "place", data.countries],
    ["Cameras", "camera", data.cameras], ["Years", "year", data.years], ["Tags", "tag", data.tags],
  ];
  const sections = [];
  for (const [title, key, entries] of groups) {
    if (!entries || !entries.length) continue;
    const group = document.createElement("div");
    group.className = "facet-group";
    group.dataset.facet = title.toLowerCase();
    const heading = document.createElement("h3");
    heading.textContent = title;
    const list = document.createElement("ul");
    for (const entry of entries) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "facet";
      button.dataset.key = key;
      button.dataset.value = entry.value;
      const active = String(state.filters[key] || "") === String(entry.value);
      button.setAttribute("aria-pressed", String(active));
      const name = document.createElement("span");
      name.textContent = entry.label || entry.value;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = entry.count;
      button.append(name, count);
      button.addEventListener("click", () => setFilter(key, active ? null : entry.value));
      item.append(button);
      list.append(item);
    }
    group.append(heading, list);
    sections.push(group);
  }
  if (!sections.length) {
    sections.push(Object.assign(document.createElement("p"), {
      className: "hint", textContent: "No places, cameras, dates or tags in these pictures.",
    }));
  }
  els.facets.replaceChildren(...sections);
}

function toggleFacets() {
  const open = els.facets.hidden;
  els.facets.hidden = !open;
  els.facetsToggle.setAttribute("aria-expanded", String(open));
  if (open) loadFacets();
}

// The min score belongs to a step: scores of a text search, a picture and a picture + change sit on
// different scales (with pixgrep-mini the best are about 0.55, 0.9 and 0.12), so a new step of
// another kind starts with it off, and going back to a step brings back the value it ran with.
function scaleOf(step) {
  if (step.kind === "text") return "text";
  if (step.kind === "upload") return step.q ? "composed" : "picture";
  return (step.terms || []).some((t) => t.kind === "text" && t.weight > 0) ? "composed" : "picture";
}

function sliderThreshold() {
  const threshold = parseFloat(els.threshold.value);
  return threshold > 0 ? threshold : null;
}

function showThreshold(step) {
  els.threshold.value = step && step.threshold ? String(step.threshold) : "0";
  updateThresholdLabel();
}

function scope() {
  return {
    threshold: sliderThreshold(),
    roots: els.folder.value.trim() ? [els.folder.value.trim()] : [],
    all_parts: els.allParts.checked,
    ignore_tone: els.ignoreTone.checked,
    dedup: els.dedup.checked,
  };
}

// The query switches (all-of, ignore tone, collapse copies) as query or form parameters.
function switches(target) {
  const { all_parts, ignore_tone, dedup } = scope();
  const set = (name, value) => (target instanceof FormData ? target.append(name, value) : target.set(name, value));
  if (all_parts) set("all_parts", "true");
  if (ignore_tone) set("ignore_tone", "true");
  if (!dedup) set("dedup", "false");
}

// --- the query language ----------------------------------------------------------------------
// A model whose text tower is told the language of each query (NLLB-CLIP) gets a language picker,
// set to the browser's language when the model knows it, else to the server's default. Other
// models read the languages they know without being told: no picker, no `lang` sent.
async function setUpLanguages() {
  let served = null;
  try { served = (await api("/api/models")).served; } catch (_) { return; }
  const info = served && served.query_language;
  if (!info || !info.choices.length) return;
  let names = null;
  try { names = new Intl.DisplayNames(navigator.languages, { type: "language" }); } catch (_) { /* tags */ }
  const nameOf = (tag) => { try { return (names && names.of(tag)) || tag; } catch (_) { return tag; } };
  const byTag = new Map();
  const options = info.choices.map(({ code, tags }) => {
    tags.forEach((tag) => byTag.set(tag.toLowerCase(), code));
    return Object.assign(document.createElement("option"), { value: code, textContent: nameOf(tags[0]), title: code });
  });
  options.sort((a, b) => a.textContent.localeCompare(b.textContent));
  els.lang.replaceChildren(...options);
  els.lang.value = browserLanguage(byTag) || info.default;
  if (!els.lang.value) els.lang.value = options[0].value; // the default has no token here
  els.langOption.hidden = false;
}

// The browser's languages, best first, to a choice: "zh-Hant-TW" tries zh-hant-tw, zh-hant, zh.
function browserLanguage(byTag) {
  for (const language of navigator.languages || [navigator.language]) {
    const parts = String(language || "").toLowerCase().split("-");
    for (let n = parts.length; n > 0; n--) {
      const code = byTag.get(parts.slice(0, n).join("-"));
      if (code) return code;
    }
  }
  return null;
}

// The `lang` a query carries: the picker's choice, or null where the model needs none.
async function queryLanguage() {
  await state.languages;
  return els.langOption.hidden ? null : els.lang.value || null;
}

// One page of results for a step.
async function fetchPage(step, offset) {
  const { roots, all_parts, ignore_tone, dedup } = scope();
  const threshold = step.threshold || null;
  const fields = filterParams(); // the metadata filters and the query language, as request fields
  const lang = await queryLanguage();
  if (lang) fields.lang = lang;
  if (step.kind === "text") {
    const params = new URLSearchParams({ k: PAGE, offset });
    if (step.q) params.set("q", step.q);
    if (threshold !== null) params.set("threshold", threshold);
    roots.forEach((r) => params.append("root", r));
    for (const [key, value] of Object.entries(fields)) params.set(key, value);
    switches(params);
    return api("/api/search?" + params);
  }
  if (step.kind === "upload") {
    const form = new FormData();
    form.append("file", step.file, step.file.name || "pasted-image");
    if (step.q) form.append("q", step.q); // the picture plus a change typed in the search box
    form.append("k", PAGE);
    form.append("offset", offset);
    if (threshold !== null) form.append("threshold", threshold);
    roots.forEach((r) => form.append("root", r));
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    switches(form);
    return api("/api/search/image", { method: "POST", body: form });
  }
  return api("/api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ terms: step.terms, k: PAGE, offset, threshold, roots, all_parts, ignore_tone, dedup, ...fields }),
  });
}

// --- running steps -------------------------------------------------------------------------
// The browser's history mirrors the trail: each step is one history entry, so the back button
// (or a phone's back gesture) steps back through the trail, and a new step after going back
// drops the later ones in both.
async function addStep(step) {
  const current = state.current >= 0 ? state.steps[state.current] : null;
  const carried = current && scaleOf(current) === scaleOf(step) ? sliderThreshold() : null;
  step.threshold = carried;
  const generation = ++state.generation;
  state.loading = true;
  setStatus("Searching…");
  let page;
  try {
    page = await fetchPage(step, 0);
  } catch (error) {
    if (generation === state.generation) failed(error);
    return;
  }
  if (generation !== state.generation) return;
  state.steps = state.steps.slice(0, state.current + 1);
  state.steps.push(step);
  const index = state.steps.length - 1;
  const url = step.kind === "text" && step.q ? "?q=" + encodeURIComponent(step.q) : location.pathname;
  history.pushState({ step: index }, "", url);
  state.current = index;
  state.rejected = new Set(step.rejected || []);
  showThreshold(step);
  renderTrail();
  showQuery(step);
  showPage(step, page, 0);
}

// A search that failed: its error on an empty grid (never above results of another query).
function failed(error) {
  state.loading = false;
  state.shown = false;
  state.results = [];
  state.nextOffset = null;
  els.grid.replaceChildren();
  els.fusion.hidden = true;
  els.more.hidden = true;
  setStatus(error.message, true);
  document.body.classList.toggle("has-results", state.steps.length > 0);
}

// Move along the trail (trail buttons, [ and ], Alt+Left) through the browser's history.
function travel(index) {
  if (index === state.current && !state.shown) { goTo(index); return; } // show it again after an error
  if (index < 0 || index >= state.steps.length || index === state.current) return;
  history.go(index - state.current);
}

function onHistory(event) {
  const index = event.state && typeof event.state.step === "number" ? event.state.step : -1;
  if (index >= 0 && index < state.steps.length) goTo(index);
  else showStart();
}

// Before the first step (or a step from before a reload): an empty page with the help.
// The search box holds what the current step is made of: its text, or (for a picture, a refine
// step or filters alone) nothing, with the step described in the placeholder instead.
function showQuery(step) {
  if (step && step.kind === "upload") { // its picture stays attached to the box, with its change
    attach(step.file, step.picture);
    els.q.value = step.q || "";
    return;
  }
  if (state.attached) attach(null);
  if (step && step.kind === "text" && step.q) {
    els.q.value = step.q;
    els.q.placeholder = state.basePlaceholder;
  } else {
    els.q.value = "";
    els.q.placeholder = step ? `Showing ${step.label}: type to start a new search` : state.basePlaceholder;
  }
}

function showStart() {
  showQuery(null);
  state.current = -1;
  state.generation++;
  state.results = [];
  state.nextOffset = null;
  els.grid.replaceChildren();
  els.more.hidden = true;
  setStatus("");
  renderTrail();
  document.body.classList.remove("has-results");
}

async function goTo(index) {
  if (index < 0 || index >= state.steps.length) return;
  state.current = index;
  const step = state.steps[index];
  state.rejected = new Set(step.rejected || []);
  showThreshold(step);
  renderTrail();
  showQuery(step);
  await run(step, 0);
}

async function run(step, offset) {
  const generation = offset === 0 ? ++state.generation : state.generation;
  state.loading = true;
  setStatus(offset === 0 ? "Searching…" : "Loading more…");
  let page;
  try {
    page = await fetchPage(step, offset);
  } catch (error) {
    if (generation !== state.generation) return false;
    if (offset === 0) failed(error);
    else { state.loading = false; setStatus(error.message, true); }
    return false;
  }
  if (generation !== state.generation) return false;
  showPage(step, page, offset);
  return true;
}

// One answered page of a step into the grid (the first page replaces what was there).
function showPage(step, page, offset) {
  if (offset === 0) {
    state.results = [];
    els.grid.replaceChildren();
    window.scrollTo({ top: 0 });
    showFusion(step, page.fusion);
  }
  state.shown = true;
  state.results.push(...page.results);
  state.nextOffset = page.next_offset;
  appendTiles(page.results);
  const n = state.results.length;
  setStatus(n ? `${n}${state.nextOffset !== null ? "+" : ""} result${n === 1 ? "" : "s"} for ${step.label}`
    : `Nothing found for ${step.label}` + (step.threshold ? " (try a lower min score)" : ""));
  state.loading = false;
  els.more.hidden = state.nextOffset === null;
  document.body.classList.toggle("has-results", state.steps.length > 0);
  updateViewerButtons();
}

function loadMore() {
  if (state.loading || state.nextOffset === null || state.current < 0) return;
  run(state.steps[state.current], state.nextOffset);
}

// One short line under the status for picture + text steps: which fusion made the query.
function showFusion(step, fusion) {
  const composed = scaleOf(step) === "composed";
  els.fusion.hidden = !composed;
  els.fusion.textContent = !composed ? ""
    : fusion === "combiner" ? "Picture and change fused by this model's trained Combiner."
    : "Picture and change added as vectors (this model has no trained Combiner).";
}

function setStatus(text, isError = false) {
  els.status.textContent = text;
  els.status.classList.toggle("error", isError);
}

// --- rendering -----------------------------------------------------------------------------
function describe(result) {
  const date = result.taken_at ? `captured ${result.taken_at.replace("T", " ")}` : "no capture date";
  const lines = [result.name, date, `score ${result.score.toFixed(3)}`];
  if (result.parts) lines.push(partsText(result.parts));
  if (result.duplicates && result.duplicates.length) lines.push(`+${result.duplicates.length} near-identical`);
  if (result.words) lines.push(`words: ${result.words.join(" ")} (${result.words_from.join(", ")})`);
  return lines.join("\n");
}

// The query's words found in the picture's text, names or keywords, highlighted (why it matched).
function matchedWords(result) {
  const words = document.createElement("span");
  words.className = "words";
  words.title = `found in: ${result.words_from.join(", ")}`;
  for (const word of result.words) {
    const mark = document.createElement("mark");
    mark.textContent = word;
    words.append(mark, " ");
  }
  return words;
}

// "bed 0.31, striped couch 0.18": which parts of an all-of query a result matches.
function partsText(parts) {
  return Object.entries(parts).map(([text, score]) => `${text} ${score.toFixed(2)}`).join(", ");
}

// A thumbnail shows a neutral placeholder (the tile's own background) until it has decoded, so
// slow previews (large HEIC photos) never flash as black squares.
function thumbLoaded(img) {
  img.classList.add("loaded");
}

function appendTiles(results) {
  const fragment = document.createDocumentFragment();
  for (const result of results) {
    const item = document.createElement("li");
    item.dataset.id = result.id;
    item.classList.toggle("rejected", state.rejected.has(result.id));

    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile";
    tile.title = describe(result);
    tile.setAttribute("aria-label", `${result.name}, score ${result.score.toFixed(3)}`);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = result.name;
    img.decoding = "async";
    img.addEventListener("load", () => thumbLoaded(img), { once: true });
    img.addEventListener("error", () => img.classList.add("failed"), { once: true });
    img.src = result.thumb;
    if (img.complete && img.naturalWidth > 0) thumbLoaded(img);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = result.score.toFixed(3);
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = result.name + (result.taken_at ? " · " + result.taken_at.slice(0, 10) : "");
    tile.append(img, score, caption);
    if (result.duplicates && result.duplicates.length) {
      const copies = document.createElement("span");
      copies.className = "copies";
      copies.textContent = `+${result.duplicates.length} near-identical`;
      tile.append(copies);
    }
    if (result.words) tile.append(matchedWords(result));
    tile.addEventListener("click", () => openViewer(result));

    const reject = document.createElement("button");
    reject.type = "button";
    reject.className = "reject";
    reject.textContent = "✕";
    reject.title = "Not this (x): push it away in the next refine step";
    reject.setAttribute("aria-label", `Not this: ${result.name}`);
    reject.tabIndex = -1; // one Tab stop per tile: from the keyboard, "x" marks the focused tile
    reject.setAttribute("aria-pressed", String(state.rejected.has(result.id)));
    reject.addEventListener("click", () => toggleReject(result.id));

    item.append(tile, reject);
    fragment.append(item);
  }
  els.grid.append(fragment);
}

function toggleReject(id) {
  if (state.rejected.has(id)) state.rejected.delete(id); else state.rejected.add(id);
  const on = state.rejected.has(id);
  const item = els.grid.querySelector(`li[data-id="${id}"]`);
  if (item) {
    item.classList.toggle("rejected", on);
    item.querySelector(".reject").setAttribute("aria-pressed", String(on));
  }
  if (state.open && state.open.id === id) els.rejectOne.setAttribute("aria-pressed", String(on));
  updateRefineHint();
}

function renderTrail() {
  els.trail.hidden = state.steps.length === 0;
  els.back.disabled = state.current <= 0;
  els.steps.replaceChildren(...state.steps.map((step, i) => {
    const item = document.createElement("li");
    if (i > state.current) item.classList.add("later");
    const button = document.createElement("button");
    button.type = "button";
    if (step.kind === "upload") { // the query picture itself, small, beside its name
      step.preview = step.preview || URL.createObjectURL(step.file);
      const img = document.createElement("img");
      img.src = step.preview;
      img.alt = "";
      button.append(img);
    }
    button.append(step.label);
    button.title = `Step ${i + 1}: ${step.label}`;
    if (i === state.current) button.setAttribute("aria-current", "step");
    button.addEventListener("click", () => travel(i));
    item.append(button);
    return item;
  }));
}

// --- the viewer and the refine loop --------------------------------------------------------
function openIndex() {
  return state.open ? state.results.findIndex((r) => r.id === state.open.id) : -1;
}

function updateViewerButtons() {
  const index = openIndex();
  els.prev.disabled = index <= 0;
  els.next.disabled = index < 0 || (index >= state.results.length - 1 && state.nextOffset === null);
}

// Previous / next result in the large view; past the last loaded one, the next page is fetched.
async function showNeighbour(by) {
  const index = openIndex();
  if (index < 0) return;
  let target = index + by;
  if (target >= state.results.length && state.nextOffset !== null && !state.loading) {
    await run(state.steps[state.current], state.nextOffset);
  }
  target = Math.min(Math.max(target, 0), state.results.length - 1);
  if (target !== index) openViewer(state.results[target], { keepFocus: true });
}

function openViewer(result, { keepFocus = false } = {}) {
  state.open = result;
  els.viewerImg.src = `/api/images/${result.id}/thumb?size=1024`;
  els.viewerImg.alt = result.name;
  els.viewerName.textContent = result.name;
  const parts = [result.path];
  if (result.width && result.height) parts.push(`${result.width}×${result.height}`);
  parts.push(result.taken_at ? `captured ${result.taken_at.replace("T", " ")}` : "no capture date");
  parts.push(`score ${result.score.toFixed(3)}`);
  els.viewerDetails.textContent = parts.join(" · ");
  els.viewerParts.hidden = !result.parts;
  els.viewerParts.textContent = result.parts ? "matches: " + partsText(result.parts) : "";
  const copies = result.duplicates || [];
  els.viewerDuplicates.hidden = copies.length === 0;
  // The folded copies, each a link that opens that file (the group shows its largest, newest copy).
  els.viewerDuplicates.replaceChildren();
  if (copies.length) {
    els.viewerDuplicates.append(`+${copies.length} near-identical: `);
    copies.forEach((copy, i) => {
      const link = document.createElement("a");
      link.href = copy.file;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = copy.name;
      link.title = copy.path;
      if (i) els.viewerDuplicates.append(", ");
      els.viewerDuplicates.append(link);
    });
  }
  els.openFull.href = result.file;
  showMeta(result);
  els.rejectOne.setAttribute("aria-pressed", String(state.rejected.has(result.id)));
  els.refineText.value = "";
  updateRefineHint();
  updateViewerButtons();
  if (!els.viewer.open) els.viewer.showModal();
  if (!keepFocus) els.refineText.focus();
}

// Tab and Shift+Tab go round the large view's own controls, never to the page behind it.
function trapFocus(event) {
  const focusable = [...els.viewer.querySelectorAll("button, a[href], input, [tabindex]")]
    .filter((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0);
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  const inside = els.viewer.contains(document.activeElement);
  if (event.shiftKey && (document.activeElement === first || !inside)) { last.focus(); event.preventDefault(); }
  else if (!event.shiftKey && (document.activeElement === last || !inside)) { first.focus(); event.preventDefault(); }
}

// Camera, lens, place, coordinates and keywords of the open picture (keywords filter on a click).
async function showMeta(result) {
  els.viewerMeta.hidden = true;
  els.viewerMeta.replaceChildren();
  let meta;
  try { meta = await api(`/api/images/${result.id}/meta`); } catch (_) { return; }
  if (!state.open || state.open.id !== result.id) return;
  const rows = [];
  const add = (name, value) => {
    if (value === null || value === undefined || value === "") return;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    rows.push(dt, dd);
  };
  add("Title", meta.title);
  add("Description", meta.description);
  add("Camera", meta.camera);
  add("Lens", meta.lens);
  add("Place", meta.place);
  if (meta.latitude !== null && meta.latitude !== undefined) {
    const alt = meta.altitude !== null && meta.altitude !== undefined ? `, ${Math.round(meta.altitude)} m` : "";
    add("Coordinates", `${meta.latitude.toFixed(5)}, ${meta.longitude.toFixed(5)}${alt}`);
  }
  if (meta.keywords && meta.keywords.length) {
    const span = document.createElement("span");
    span.className = "keywords";
    for (const word of meta.keywords) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip";
      button.textContent = word;
      button.title = `Show pictures tagged ${word}`;
      button.addEventListener("click", () => { closeViewer(); setFilter("tag", word); });
      span.append(button);
    }
    add("Keywords", span);
  }
  els.viewerMeta.replaceChildren(...rows);
  els.viewerMeta.hidden = rows.length === 0;
}

function closeViewer() {
  if (els.viewer.open) els.viewer.close();
}

function otherRejected() {
  return [...state.rejected].filter((id) => !state.open || id !== state.open.id);
}

function updateRefineHint() {
  const n = otherRejected().length;
  els.refineHint.textContent = n
    ? `The next search starts from this picture, adds your change, and avoids the ${n} picture${n === 1 ? "" : "s"} marked "not this".`
    : "The next search starts from this picture and adds your change. Mark results with ✕ to avoid them.";
}

function rejectTerms(ids) {
  const weight = -REJECT_WEIGHT / Math.max(1, ids.length);
  return ids.map((id) => ({ kind: "image_id", value: id, weight }));
}

function moreLikeThis() {
  const result = state.open;
  closeViewer();
  const rejected = otherRejected();
  addStep({
    kind: "terms",
    label: `like ${result.name}`,
    terms: [{ kind: "image_id", value: result.id, weight: 1 }, ...rejectTerms(rejected)],
    rejected,
  });
}

function refine(event) {
  event.preventDefault();
  const change = els.refineText.value.trim();
  if (!change) { moreLikeThis(); return; }
  const result = state.open;
  closeViewer();
  const rejected = otherRejected();
  addStep({
    kind: "terms",
    label: `${result.name} + “${change}”` + (rejected.length ? ` − ${rejected.length}` : ""),
    terms: [
      { kind: "image_id", value: result.id, weight: 1 },
      { kind: "text", value: change, weight: 1 },
      ...rejectTerms(rejected),
    ],
    rejected,
  });
}

// --- input: the search box, images (choose, drop, paste), options ---------------------------
function searchText(event) {
  event.preventDefault();
  const q = els.q.value.trim();
  const picture = state.attached;
  if (picture) { // the uploaded picture plus the typed change (or the picture alone again)
    const label = q ? `${picture.label} + “${q}”` : picture.label;
    addStep({ kind: "upload", file: picture.file, picture: picture.label, q, label, rejected: [] });
    return;
  }
  if (!q) { els.q.focus(); return; }
  addStep({ kind: "text", q, label: `“${q}”`, rejected: [] });
}

// After an image search, the picture stays attached to the search box: text typed there is added
// to it, until the ✕ takes it off (or another picture replaces it).
function attach(file, label) {
  if (file && state.attached && state.attached.file === file) return;
  if (state.attached) URL.revokeObjectURL(state.attached.url);
  state.attached = file ? { file, label, url: URL.createObjectURL(file) } : null;
  els.attached.hidden = !file;
  els.attachedImg.src = file ? state.attached.url : "";
  els.attachedName.textContent = file ? (file.name || "pasted image") : "";
  els.q.placeholder = file ? `Type a change to add to ${file.name || "the picture"} (in red, at night…)` : state.basePlaceholder;
}

function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    setStatus("That is not an image file.", true);
    return;
  }
  closeViewer();
  const label = `image ${file.name || "(pasted)"}`;
  addStep({ kind: "upload", file, picture: label, label, rejected: [] });
}

function rerun() {
  if (state.current < 0) return;
  const step = state.steps[state.current];
  step.threshold = sliderThreshold();
  run(step, 0);
}

function updateThresholdLabel() {
  const value = parseFloat(els.threshold.value);
  els.thresholdValue.textContent = value > 0 ? value.toFixed(2) : "off";
}

let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes("Files");
}

// --- keyboard ------------------------------------------------------------------------------
function typing(target) {
  return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
}

function moveFocus(key) {
  const tiles = [...els.grid.querySelectorAll(".tile")];
  const index = tiles.indexOf(document.activeElement);
  if (index < 0) { if (tiles[0]) tiles[0].focus(); return; }
  const top = tiles[0].getBoundingClientRect().top;
  const perRow = Math.max(1, tiles.filter((t) => t.getBoundingClientRect().top === top).length);
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow }[key];
  const target = tiles[Math.min(tiles.length - 1, Math.max(0, index + step))];
  target.focus();
  target.scrollIntoView({ block: "nearest" });
  if (index + step >= tiles.length - perRow) loadMore();
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) {
    if (event.altKey && event.key === "ArrowLeft" && !els.viewer.open) { travel(state.current - 1); event.preventDefault(); }
    return;
  }
  if (els.viewer.open) {
    if (event.key === "Tab") { trapFocus(event); return; }
    // arrows page through the results, except while editing a change that has text in it
    const editing = typing(event.target) && event.target.value !== "";
    if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && !editing) {
      showNeighbour(event.key === "ArrowLeft" ? -1 : 1);
      event.preventDefault();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "m") { moreLikeThis(); event.preventDefault(); }
    if (event.key === "x" && state.open) { toggleReject(state.open.id); event.preventDefault(); }
    return;
  }
  if (typing(event.target)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.key === "/") { els.q.focus(); els.q.select(); event.preventDefault(); }
  else if (event.key === "[") travel(state.current - 1);
  else if (event.key === "]") travel(state.current + 1);
  else if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(event.key)
           && (document.activeElement === document.body || document.activeElement.classList.contains("tile"))) {
    moveFocus(event.key);
    event.preventDefault();
  } else if (event.key === "x" && document.activeElement.classList.contains("tile")) {
    toggleReject(Number(document.activeElement.parentElement.dataset.id));
  }
}

// --- wiring --------------------------------------------------------------------------------
function wire() {
  els.form.addEventListener("submit", searchText);
  els.file.addEventListener("change", () => { searchImage(els.file.files[0]); els.file.value = ""; });
  els.uploadLabel.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { els.file.click(); event.preventDefault(); }
  });
  els.threshold.addEventListener("input", updateThresholdLabel);
  els.threshold.addEventListener("change", rerun);
  els.folder.addEventListener("change", rerun);
  for (const box of [els.allParts, els.ignoreTone, els.dedup, els.lang]) box.addEventListener("change", rerun);
  els.folder.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); rerun(); } });
  els.back.addEventListener("click", () => travel(state.current - 1));
  els.facetsToggle.addEventListener("click", toggleFacets);
  window.addEventListener("popstate", onHistory);
  els.more.addEventListener("click", loadMore);
  els.moreLike.addEventListener("click", moreLikeThis);
  els.rejectOne.addEventListener("click", () => state.open && toggleReject(state.open.id));
  els.refineForm.addEventListener("submit", refine);
  els.close.addEventListener("click", closeViewer);
  els.prev.addEventListener("click", () => showNeighbour(-1));
  els.next.addEventListener("click", () => showNeighbour(1));
  els.detach.addEventListener("click", () => { attach(null); els.q.focus(); });
  els.optionsToggle.addEventListener("click", () => {
    const open = els.header.classList.toggle("show-options");
    els.optionsToggle.setAttribute("aria-expanded", String(open));
  });
  els.viewer.addEventListener("click", (event) => { if (event.target === els.viewer) closeViewer(); });
  els.viewer.addEventListener("close", () => {
    const item = state.open && els.grid.querySelector(`li[data-id="${state.open.id}"] .tile`);
    if (item) item.focus();
  });
  document.addEventListener("keydown", onKey);

  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth++;
    els.drop.hidden = false;
  });
  window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; els.drop.hidden = true; } });
  window.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    els.drop.hidden = true;
    searchImage(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const items = [...(event.clipboardData ? event.clipboardData.items : [])];
    const image = items.find((item) => item.kind === "file" && item.type.startsWith("image/"));
    if (!image) return; // ordinary text paste into a box
    event.preventDefault();
    searchImage(image.getAsFile());
  });

  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: "600px" }).observe(els.sentinel);

  updateThresholdLabel();
}

// --- an index run in progress ----------------------------------------------------------------
// The server's own index runs (POST /api/index) report their progress at GET /api/index; while one
// runs, a line under the search box says how far it is; the image count in the placeholder is
// refreshed on every poll, so it also follows index runs from the command line.
async function pollIndex() {
  let status = null;
  try { status = await api("/api/index"); } catch (_) { /* the next poll tries again */ }
  const running = status && status.state === "running";
  if (running) {
    const s = status.summary || {};
    const done = (s.encoded || 0) + (s.reused || 0);
    els.indexing.textContent = `Indexing ${status.folder}: ${done} of ${s.found || "?"} pictures so far…`;
  }
  els.indexing.hidden = !running;
  refreshCount(); // also follows index runs of the same catalog from the command line
  setTimeout(pollIndex, running ? 1500 : 10000);
}

async function refreshCount() {
  try {
    const stats = await api("/api/stats");
    state.basePlaceholder = `Describe a picture: ${stats.searchable} images` + (touchOnly() ? "" : " (press / to type here)");
    if (els.q.placeholder.startsWith("Describe a picture")) els.q.placeholder = state.basePlaceholder;
  } catch (_) { /* shown by the next search */ }
}

async function start() {
  wire();
  state.languages = setUpLanguages(); // every query waits for it (fetchPage): the first one too
  // The address's own query is read now, before anything is awaited: by the time the stats answer
  // the user may have searched (and the address changed), and that must not add a step again.
  const initial = new URLSearchParams(location.search).get("q");
  history.replaceState({ step: -1 }, "", location.pathname + location.search.replace(/([?&])token=[^&]*&?/, "$1").replace(/[?&]$/, ""));
  if (initial) { els.q.value = initial; addStep({ kind: "text", q: initial, label: `“${initial}”`, rejected: [] }); }
  else if (!touchOnly()) els.q.focus(); // no keyboard popping up on a phone before it is wanted
  try {
    const stats = await api("/api/stats");
    state.basePlaceholder = `Describe a picture: ${stats.searchable} images` + (touchOnly() ? "" : " (press / to type here)");
    // Only where the box shows the plain prompt: a picture or refine step keeps its "Showing ...".
    const step = state.steps[state.current];
    if (!step || (step.kind === "text" && step.q)) els.q.placeholder = state.basePlaceholder;
    const { folders } = await api("/api/folders");
    els.folders.replaceChildren(...folders.map(({ folder }) => Object.assign(document.createElement("option"), { value: folder })));
  } catch (error) {
    if (state.current < 0) setStatus(error.message, true);
  }
  pollIndex();
}

start();
