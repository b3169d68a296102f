// The preview page: shows a dataset with the API key or tile token the user gives. Nothing here
// is a credential of tilegate's: TileJSON and tiles are fetched with what the user typed (or put
// in the fragment, which never reaches a server), so the page sees what that credential may see.
import * as maplibregl from "./maplibre-gl.mjs";

const body = document.body;
const datasetId = body.dataset.dataset;
const base = body.dataset.publicUrl || location.origin;
const $ = (id) => document.getElementById(id);
let map;

function status(text, kind) {
  $("status").textContent = text;
  $("status").className = kind;
}

// The query a credential travels in: ?key=… or ?sig=…&exp=…&scope=… (from a token's query or URL).
function credentialQuery() {
  const key = $("key").value.trim();
  if (key) return new URLSearchParams({ key }).toString();
  let token = $("token").value.trim();
  if (!token) return "";
  const q = token.includes("?") ? token.slice(token.indexOf("?") + 1) : token;
  const p = new URLSearchParams(q);
  const out = new URLSearchParams();
  for (const k of ["sig", "exp", "scope"]) if (p.get(k)) out.set(k, p.get(k));
  return out.toString();
}

async function show() {
  const query = credentialQuery();
  const url = `${base}/api/tiles/${datasetId}/tilejson.json${query ? "?" + query : ""}`;
  status("Loading…", "");
  let res;
  try {
    res = await fetch(url, { cache: "no-store", referrerPolicy: "strict-origin" });
  } catch (err) {
    return status(`tilegate could not be reached: ${err}`, "refused");
  }
  if (!res.ok) {
    const reason = res.headers.get("X-Tilegate-Reason");
    let detail = "";
    try { detail = (await res.json()).detail ?? ""; } catch { /* not JSON */ }
    $("info").hidden = true;
    return status(`Refused (${res.status}${reason ? ", reason: " + reason : ""}): ${typeof detail === "string" ? detail : JSON.stringify(detail)}`, "refused");
  }
  const tj = await res.json();
  describe(tj);
  draw(tj);
  status("Shown with the credential given.", "ok");
}

function describe(tj) {
  $("info").hidden = false;
  $("name").textContent = tj.name ?? datasetId;
  $("bounds").textContent = tj.bounds ? tj.bounds.join(", ") : "the whole world";
  $("zoom").textContent = `${tj.minzoom} – ${tj.maxzoom}`;
  const ul = $("layers");
  ul.replaceChildren();
  const layers = tj.vector_layers ?? [];
  for (const l of layers) {
    const li = document.createElement("li");
    li.textContent = l.id + (l.fields ? ` (${Object.keys(l.fields).join(", ")})` : "");
    ul.append(li);
  }
  if (layers.length === 0) {
    const li = document.createElement("li");
    li.textContent = `raster (${tj.format ?? "image"}, ${tj.tileSize ?? 256} px)`;
    ul.append(li);
  }
}

const palette = ["#d7301f", "#2171b5", "#238b45", "#6a51a3", "#ec7014", "#525252"];

function draw(tj) {
  map?.remove();
  const raster = !tj.vector_layers;
  const source = raster
    ? { type: "raster", tiles: tj.tiles, tileSize: tj.tileSize ?? 256, minzoom: tj.minzoom, maxzoom: tj.maxzoom }
    : { type: "vector", tiles: tj.tiles, minzoom: tj.minzoom, maxzoom: tj.maxzoom };
  if (tj.bounds) source.bounds = tj.bounds;
  if (tj.attribution) source.attribution = tj.attribution;
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#ffffff" } }];
  if (raster) {
    layers.push({ id: "raster", type: "raster", source: "dataset", paint: { "raster-fade-duration": 0 } });
  } else {
    tj.vector_layers.forEach((l, i) => {
      const color = palette[i % palette.length];
      const from = { source: "dataset", "source-layer": l.id };
      layers.push({ id: `${l.id}-fill`, type: "fill", ...from, filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": color, "fill-opacity": 0.8 } });
      layers.push({ id: `${l.id}-line`, type: "line", ...from, filter: ["==", ["geometry-type"], "LineString"], paint: { "line-color": color, "line-width": 2 } });
      layers.push({ id: `${l.id}-point`, type: "circle", ...from, filter: ["==", ["geometry-type"], "Point"], paint: { "circle-color": color, "circle-radius": 4 } });
    });
  }
  map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources: { dataset: source }, layers },
    bounds: tj.bounds, fitBoundsOptions: { padding: 20 },
    center: tj.bounds ? undefined : [0, 0], zoom: tj.bounds ? undefined : tj.minzoom,
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  window.previewMap = map; // for tests and the curious
  map.on("error", async (e) => {
    const url = e.error?.url;
    if (!url || !e.error.status) return;
    const r = await fetch(url, { cache: "no-store", referrerPolicy: "strict-origin" });
    status(`A tile was refused (${r.status}, reason: ${r.headers.get("X-Tilegate-Reason") ?? "unknown"})`, "refused");
  });
}

$("credential").addEventListener("submit", (e) => {
  e.preventDefault();
  show();
});

// A credential in the fragment (#key=… or #sig=…&exp=…&scope=…) fills the form and shows at once.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("key")) $("key").value = fragment.get("key");
else if (fragment.get("sig")) $("token").value = fragment.toString();
if ($("key").value || $("token").value) show();
