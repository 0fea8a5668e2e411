// The clipctl serve page: plain DOM code, no build step. Results are written with textContent, never as
// HTML, so a caption or a file name cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
let indices = [];

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function currentIndex() {
  return indices.find((entry) => entry.name === $("index").value) || indices[0];
}

async function loadIndices() {
  const response = await fetch("/api/indices");
  indices = await response.json();
  for (const entry of indices) {
    const option = document.createElement("option");
    option.value = entry.name;
    option.textContent = `${entry.name} (${entry.count.toLocaleString()} ${entry.modality === "text" ? "captions" : "images"})`;
    $("index").appendChild(option);
  }
  if (indices.length) $("k").max = String(indices[0].max_k);
  const params = new URLSearchParams(location.search);
  if (params.get("index")) $("index").value = params.get("index");
  if (params.get("q")) {
    $("query").value = params.get("q");
    search({ text: params.get("q") });
  } else {
    const entry = currentIndex();
    if (entry) setStatus(`${entry.count.toLocaleString()} rows, ${entry.model || "unknown model"}`);
  }
}

// query: {text}, {id} or {file} (an uploaded image, sent as multipart form data: no base64 overhead).
async function search(query, label) {
  const index = $("index").value;
  const k = String(Number($("k").value) || 20);
  let request;
  if (query.file) {
    const form = new FormData();
    form.append("image", query.file);
    form.append("index", index);
    form.append("k", k);
    request = { method: "POST", body: form };
  } else {
    const body = JSON.stringify({ ...query, index, k: Number(k) });
    request = { method: "POST", headers: { "Content-Type": "application/json" }, body };
  }
  setStatus("searching\u2026");
  let response;
  try {
    response = await fetch("/api/search", request);
  } catch (err) {
    setStatus(`the server did not answer (${err})`, true);
    return;
  }
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    setStatus(answer.error || `HTTP ${response.status}`, true);
    return;
  }
  if (query.text !== undefined) {
    history.replaceState(null, "", `?index=${encodeURIComponent(index)}&q=${encodeURIComponent(query.text)}`);
  }
  render(answer.results);
  setStatus(`${answer.results.length} results for ${label || answer.query + " query"} in ${answer.took_ms} ms`);
}

function render(results) {
  const grid = $("results");
  grid.replaceChildren();
  for (const hit of results) grid.appendChild(card(hit));
}

function card(hit) {
  const item = document.createElement("figure");
  item.className = "result";
  item.style.margin = "0";
  if (hit.thumbnail) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.src = hit.thumbnail;
    img.alt = hit.caption || String(hit.key);
    img.title = "open the full image";
    img.addEventListener("click", () => window.open(hit.image, "_blank", "noopener"));
    item.appendChild(img);
  }
  if (hit.caption) {
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = hit.caption;
    item.appendChild(caption);
  }
  const meta = document.createElement("figcaption");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `#${hit.rank}  ${hit.score.toFixed(4)}`;
  meta.append(score, document.createElement("br"), String(hit.key));
  item.appendChild(meta);
  const actions = document.createElement("div");
  actions.className = "actions";
  const similar = document.createElement("a");
  similar.textContent = "more like this";
  similar.addEventListener("click", () => search({ id: hit.id }, `row ${hit.id}`));
  actions.appendChild(similar);
  item.appendChild(actions);
  return item;
}

function readImage(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    $("query-image").src = reader.result;
    $("query-image").style.display = "inline";
    search({ file }, file.name);
  };
  reader.onerror = () => setStatus(`cannot read ${file.name}`, true);
  reader.readAsDataURL(file);
}

$("search").addEventListener("click", () => {
  const text = $("query").value.trim();
  if (text) search({ text });
});
$("query").addEventListener("keydown", (event) => {
  if (event.key === "Enter") $("search").click();
});
$("upload").addEventListener("change", () => readImage($("upload").files[0]));
$("index").addEventListener("change", () => {
  const text = $("query").value.trim();
  if (text) search({ text });
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  readImage(event.dataTransfer.files[0]);
});
loadIndices().catch((err) => setStatus(`cannot list the indexes (${err})`, true));
