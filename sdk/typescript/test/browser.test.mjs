// MapLibre GL JS in a real browser (Debian's Chromium, driven by playwright-core) against a real
// tilegate, the page on another loopback origin: renders by API key (TileJSON) and by batch tokens
// through @tilegate/client/maplibre, a 256 px raster at the right zoom, a map left open across
// several token windows (TILEGATE_TOKEN_WINDOW=10s), and the helper's warning for a refused key.
// Pixels are checked, not just statuses: regions must be filled where the data has them.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

import { chromium } from "playwright-core";

import { createTilegate, unwrap } from "../dist/index.js";
import { tileTokenHandler } from "../examples/token-backend.mjs";
import { freePort, makeTilesets, root, startTilegate, uploadDataset } from "./harness.mjs";

const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const skip = !existsSync(chromiumPath) && !process.env.CI ? "no Chromium (apt-get install chromium)" : false;

const sdk = join(root, "sdk/typescript");
const vendor = join(sdk, "node_modules/maplibre-gl/dist");
let tg, shapes, browser, site, siteURL, vector, raster, key, wrongKey, tokenCalls = 0;

before(async () => {
  if (skip) return;
  tg = await startTilegate({ TILEGATE_TOKEN_WINDOW: "10s" });
  shapes = makeTilesets(join(tg.tmp, "tilesets"));
  vector = await uploadDataset(tg.baseUrl, tg.account.token, { name: "regions", kind: "vector" }, join(tg.tmp, "tilesets/vector.mbtiles"));
  raster = await uploadDataset(tg.baseUrl, tg.account.token, { name: "regions raster", kind: "raster", format: "png" }, join(tg.tmp, "tilesets/raster.mbtiles"));

  // The page's own server (another origin than tilegate): the page, MapLibre, the helper, and the
  // backend half that turns dataset ids into tokens with the service token.
  const port = await freePort();
  siteURL = `http://127.0.0.1:${port}`;
  const tokens = tileTokenHandler({ baseUrl: tg.baseUrl, serviceToken: tg.account.token });
  const files = {
    "/vendor/maplibre-gl.mjs": [join(vendor, "maplibre-gl.mjs"), "text/javascript"],
    "/vendor/maplibre-gl-worker.mjs": [join(vendor, "maplibre-gl-worker.mjs"), "text/javascript"],
    "/vendor/maplibre-gl.css": [join(vendor, "maplibre-gl.css"), "text/css"],
    "/sdk/maplibre.js": [join(sdk, "dist/maplibre.js"), "text/javascript"],
  };
  site = createServer((req, res) => {
    if (req.url === "/tile-tokens") {
      tokenCalls++;
      return tokens(req, res);
    }
    if (req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      return res.end(page);
    }
    const f = files[new URL(req.url, siteURL).pathname]; // MapLibre asks for its worker with ?v=
    if (!f) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": f[1] });
    res.end(readFileSync(f[0]));
  }).listen(port, "127.0.0.1");

  const tgc = createTilegate({ baseUrl: tg.baseUrl, token: tg.account.token });
  key = await unwrap(tgc.client.POST("/v1/api_keys", { body: { name: "page", origins: [siteURL] } }));
  wrongKey = await unwrap(tgc.client.POST("/v1/api_keys", { body: { name: "elsewhere", origins: ["https://maps.example.com"] } }));

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  site?.close();
  tg?.stop();
});

const page = `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/vendor/maplibre-gl.css">
<style>html, body, #map { margin: 0; width: 512px; height: 512px; }</style></head>
<body><div id="map"></div><script type="module">
import * as maplibregl from "/vendor/maplibre-gl.mjs";
import { tilegateMap } from "/sdk/maplibre.js";
window.maplibregl = maplibregl;
window.tilegateMap = tilegateMap;
// The browser half: the app's backend gives the tokens (the page has no service token).
window.fetchTokens = (ids) => fetch("/tile-tokens", { method: "POST", headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ dataset_ids: ids }) }).then((r) => r.json());
window.newMap = async (center, zoom) => {
  const map = new maplibregl.Map({ container: "map", center, zoom, fadeDuration: 0, attributionControl: false,
    canvasContextAttributes: { preserveDrawingBuffer: true },
    style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#ffffff" } }] } });
  await map.once("load");
  window.map = map;
  return true;
};
window.idle = () => new Promise((ok) => { map.once("idle", () => ok(true)); map.triggerRepaint(); });
window.pixelAt = (lngLat) => {
  const p = map.project(lngLat);
  if (p.x < 0 || p.y < 0 || p.x >= 512 || p.y >= 512) throw new Error("off the map: " + lngLat);
  const c = document.createElement("canvas");
  c.width = map.getCanvas().width; c.height = map.getCanvas().height;
  const ctx = c.getContext("2d");
  ctx.drawImage(map.getCanvas(), 0, 0);
  const r = devicePixelRatio;
  return Array.from(ctx.getImageData(Math.round(p.x * r), Math.round(p.y * r), 1, 1).data.slice(0, 3));
};
window.ready = true;
</script></body></html>`;

/** A fresh page on the site with the map's tile responses and console warnings recorded. */
async function openMap(center, zoom) {
  const p = await browser.newPage({ viewport: { width: 512, height: 512 } });
  const seen = { responses: [], warnings: [], errors: [] };
  p.on("response", (r) => {
    if (r.url().startsWith(tg.baseUrl)) seen.responses.push({ url: r.url(), status: r.status() });
  });
  p.on("console", (m) => {
    if (m.type() === "warning") seen.warnings.push(m.text());
    if (m.type() === "error") seen.errors.push(m.text());
  });
  p.on("pageerror", (e) => seen.errors.push(String(e)));
  if (process.env.BROWSER_DEBUG) p.on("console", (m) => console.log("page:", m.type(), m.text()));
  await p.goto(siteURL + "/");
  await p.waitForFunction(() => window.ready === true);
  await p.evaluate(([c, z]) => window.newMap(c, z), [center, zoom]);
  return { p, seen };
}

const near = (got, want, tol = 40) => got.every((v, i) => Math.abs(v - want[i]) <= tol);
const region = (name) => shapes.regions.find((r) => r.name === name).interior;
const fill = [255, 0, 0];
const white = [255, 255, 255];

test("renders a private dataset by API key (TileJSON): regions filled, the hole and the sea not", { skip }, async () => {
  const { p, seen } = await openMap(region("Mediterra"), 0); // the whole world in 512 px
  await p.evaluate(([url, fill]) => {
    const tg = window.tilegateMap(map);
    tg.addTileJSON("regions", url);
    map.addLayer({ id: "regions", type: "fill", source: "regions", "source-layer": "regions", paint: { "fill-color": `rgb(${fill})` } });
  }, [`${tg.baseUrl}/api/tiles/${vector.id}/tilejson.json?key=${key.token}`, fill]);
  await p.evaluate(() => window.idle());
  if (process.env.BROWSER_DEBUG) await p.screenshot({ path: "/tmp/key.png" });
  for (const name of shapes.regions.map((r) => r.name)) {
    const px = await p.evaluate((ll) => window.pixelAt(ll), region(name));
    assert.ok(near(px, fill), `${name}: pixel ${px}, want the fill ${fill}`);
  }
  const out = await p.evaluate((ll) => window.pixelAt(ll), shapes.outside);
  assert.ok(near(out, white), `the hole of Anulus: pixel ${out}, want white`);
  assert.ok(seen.responses.some((r) => r.url.includes("/tilejson.json") && r.status === 200));
  assert.ok(seen.responses.filter((r) => r.url.includes(".pbf") && r.status === 200).length > 0, "vector tiles loaded");
  assert.deepEqual(seen.responses.filter((r) => r.status >= 400), []);
  assert.deepEqual(seen.errors, []);
  await p.close();
});

test("renders by batch tokens through the helper: one batch call for two datasets; 256 px raster at the map's zoom", { skip }, async () => {
  const { p, seen } = await openMap([50, 20], 2); // Mediterra and Anulus' hole in view
  const before = tokenCalls;
  const added = await p.evaluate(async ([ids, fill]) => {
    window.tg = window.tilegateMap(map, { fetchTokens: window.fetchTokens });
    const got = await window.tg.addDatasets(ids);
    map.addLayer({ id: "raster", type: "raster", source: ids[1], paint: { "raster-fade-duration": 0 } });
    map.addLayer({ id: "regions", type: "line", source: ids[0], "source-layer": "regions", paint: { "line-color": `rgb(${fill})`, "line-width": 3 } });
    return Object.keys(got);
  }, [[vector.id, raster.id], fill]);
  assert.deepEqual(added, [vector.id, raster.id]);
  assert.equal(tokenCalls - before, 1, "one batch call for both datasets");
  await p.evaluate(() => window.idle());
  // The raster's fill colour says which zoom level's tile is drawn. MapLibre's zoom counts 512 px
  // tiles: at map zoom 2 a 256 px tileset must load zoom 3 (without tileSize, MapLibre takes 512
  // and loads zoom 2, a level too coarse).
  const px = await p.evaluate((ll) => window.pixelAt(ll), region("Mediterra"));
  assert.ok(near(px, shapes.zoomColors[3]), `raster pixel ${px}, want zoom 3's colour ${shapes.zoomColors[3]}`);
  const zooms = new Set(seen.responses.filter((r) => r.url.includes(".png")).map((r) => new URL(r.url).pathname.split("/")[4]));
  assert.deepEqual([...zooms], ["3"], "raster tiles requested at zoom 3 only");
  const bg = await p.evaluate((ll) => window.pixelAt(ll), shapes.outside);
  assert.ok(near(bg, shapes.background), `outside every region: ${bg}, want the raster's background`);
  assert.ok(seen.responses.some((r) => r.url.includes(".pbf?sig=") && r.status === 200), "vector tiles by token");
  assert.deepEqual(seen.responses.filter((r) => r.status >= 400), []);
  await p.close();
});

test("a map left open across several token windows keeps loading tiles with zero 403s", { skip, timeout: 120_000 }, async () => {
  const { p, seen } = await openMap([0, 0], 1);
  await p.evaluate(async (ids) => {
    window.refreshed = [];
    window.tg = window.tilegateMap(map, { fetchTokens: window.fetchTokens });
    window.tg.on("tokens", (t) => window.refreshed.push(Object.values(t)[0].exp));
    await window.tg.addDatasets(ids);
    map.addLayer({ id: "raster", type: "raster", source: ids[0], paint: { "raster-fade-duration": 0 } });
  }, [raster.id]);
  await p.evaluate(() => window.idle());
  // Move to new places for 35 s (3+ windows of 10 s): every move needs tiles not loaded yet.
  const places = [];
  for (let z = 2; z <= 4; z++) for (const r of shapes.regions) places.push([r.interior, z]);
  const start = Date.now();
  let moves = 0;
  while (Date.now() - start < 35_000) {
    const [center, zoom] = places[moves % places.length];
    await p.evaluate(([c, z]) => { map.jumpTo({ center: c, zoom: z }); return window.idle(); }, [center, zoom]);
    moves++;
    await p.waitForTimeout(1500);
  }
  const exps = await p.evaluate(() => window.refreshed);
  const distinct = new Set(exps);
  assert.ok(distinct.size >= 4, `tokens of ${distinct.size} windows (${exps}), want at least 4 in 35 s`);
  const tiles = seen.responses.filter((r) => r.url.includes(".png"));
  const tileExps = new Set(tiles.map((r) => new URL(r.url).searchParams.get("exp")));
  assert.ok(tileExps.size >= 3, `tiles loaded with tokens of ${tileExps.size} windows, want 3 or more`);
  assert.deepEqual(seen.responses.filter((r) => r.status === 403 || r.status === 401), [], "no tile refused");
  assert.ok(tiles.length > 20, `${tiles.length} tiles loaded over ${moves} moves`);
  await p.close();
});

test("a key whose origins do not list the page: the helper warns once, naming the dataset and reason origin", { skip }, async () => {
  const { p, seen } = await openMap([0, 0], 1);
  const refusals = await p.evaluate(async (url) => {
    const got = [];
    const tg = window.tilegateMap(map);
    tg.on("refused", (r) => got.push(r));
    tg.addTileJSON("elsewhere", url);
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500)); // a second report would come now
    return got;
  }, `${tg.baseUrl}/api/tiles/${vector.id}/tilejson.json?key=${wrongKey.token}`);
  assert.equal(refusals.length, 1, JSON.stringify(refusals));
  assert.equal(refusals[0].reason, "origin");
  assert.equal(refusals[0].status, 403);
  assert.equal(refusals[0].datasetId, vector.id);
  const warning = seen.warnings.find((w) => w.startsWith("tilegate:"));
  assert.ok(warning, `a console warning; got ${JSON.stringify(seen.warnings)}`);
  assert.match(warning, new RegExp(`dataset ${vector.id}.*403 origin: add this page's origin to the API key's origins`));
  await p.close();
});

test("the preview page renders a private dataset by key under its CSP, and shows the reason for a wrong key", { skip }, async () => {
  const tgc = createTilegate({ baseUrl: tg.baseUrl, token: tg.account.token });
  const previewKey = await unwrap(tgc.client.POST("/v1/api_keys", { body: { name: "preview", origins: [tg.baseUrl] } }));
  const p = await browser.newPage({ viewport: { width: 900, height: 600 } });
  const problems = [];
  p.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  p.on("pageerror", (e) => problems.push(String(e)));
  await p.goto(`${tg.baseUrl}/preview/${vector.id}#key=${previewKey.token}`);
  await p.waitForFunction(() => document.getElementById("status").className === "ok", null, { timeout: 30_000 });
  await p.evaluate(() => new Promise((ok) => { previewMap.once("idle", ok); previewMap.triggerRepaint(); }));
  const info = await p.evaluate(() => ({
    bounds: document.getElementById("bounds").textContent,
    zoom: document.getElementById("zoom").textContent,
    layers: [...document.querySelectorAll("#layers li")].map((li) => li.textContent),
  }));
  assert.equal(info.bounds, shapes.bounds.join(", "));
  assert.equal(info.zoom, `0 – ${shapes.maxzoom}`);
  assert.deepEqual(info.layers.map((l) => l.split(" ")[0]), ["regions", "labels", "roads"]);
  const px = await p.evaluate((ll) => {
    const pt = previewMap.project(ll);
    const c = document.createElement("canvas");
    const src = previewMap.getCanvas();
    c.width = src.width; c.height = src.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(src, 0, 0);
    return Array.from(ctx.getImageData(Math.round(pt.x * devicePixelRatio), Math.round(pt.y * devicePixelRatio), 1, 1).data.slice(0, 3));
  }, region("Mediterra"));
  assert.ok(!near(px, white, 10), `Mediterra is drawn: pixel ${px}`);
  assert.deepEqual(problems, [], "no CSP violation or script error");

  await p.close();

  // A key whose origins do not list the page's: the page shows tilegate's reason.
  const q = await browser.newPage();
  await q.goto(`${tg.baseUrl}/preview/${vector.id}#key=${key.token}`);
  await q.waitForFunction(() => document.getElementById("status").className === "refused", null, { timeout: 30_000 });
  assert.match(await q.textContent("#status"), /Refused \(403, reason: origin\)/);
  await q.close();
});

// The preview page embeds MapLibre GL JS vendored from npm: the copy is the pinned package's.
test("preview/assets/maplibre is maplibre-gl as package.json pins it", () => {
  const pinned = JSON.parse(readFileSync(join(sdk, "package.json"), "utf8")).devDependencies["maplibre-gl"];
  assert.equal(JSON.parse(readFileSync(join(sdk, "node_modules/maplibre-gl/package.json"), "utf8")).version, pinned);
  for (const f of ["maplibre-gl.mjs", "maplibre-gl-worker.mjs", "maplibre-gl.css"]) {
    assert.ok(readFileSync(join(root, "preview/assets/maplibre", f)).equals(readFileSync(join(vendor, f))),
      `preview/assets/maplibre/${f} differs from maplibre-gl ${pinned}: copy it from sdk/typescript/node_modules/maplibre-gl/dist`);
  }
});
