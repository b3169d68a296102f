// The SDK against a real `tilegate serve` (built from this tree, on a scratch SQLite database).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { validateStyleMin } from "@maplibre/maplibre-gl-style-spec";

import { createTilegate, isTokenError, tileURL, TilegateError, unwrap } from "../dist/index.js";

const root = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
const tmp = mkdtempSync(join(tmpdir(), "tilegate-sdk-"));
const bin = join(tmp, "tilegate");
const dbURL = "sqlite:" + join(tmp, "tilegate.db");
let server;
let baseUrl;
let a, b; // {account_id, token}

function tilegate(...args) {
  return execFileSync(bin, args, { env: { ...process.env, DATABASE_URL: dbURL }, encoding: "utf8" });
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    }).on("error", fail);
  });
}

before(async () => {
  execFileSync("go", ["build", "-o", bin, "./cmd/tilegate"], { cwd: root, stdio: "inherit" });
  execFileSync("go", ["run", "./sdk/typescript/test/mkmbtiles", join(tmp, "roads.mbtiles")], { cwd: root, stdio: "inherit" });
  tilegate("migrate");
  a = JSON.parse(tilegate("admin", "create-account", "--name", "a"));
  b = JSON.parse(tilegate("admin", "create-account", "--name", "b"));
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`, "--database-url", dbURL,
    "--data-dir", join(tmp, "data"), "--log-level", "error"], { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(baseUrl + "/readyz")).ok) break;
    } catch { /* not up yet */ }
    if (i > 150) throw new Error("tilegate serve did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(() => {
  server?.kill();
  rmSync(tmp, { recursive: true, force: true });
});

test("listAPIKeys walks both pages", async () => {
  const tg = createTilegate({ baseUrl, token: a.token });
  const made = new Set();
  for (let i = 0; i < 12; i++) {
    made.add((await unwrap(tg.client.POST("/v1/api_keys"))).id); // no body: every default
  }
  const first = await unwrap(tg.client.GET("/v1/api_keys", { params: { query: { limit: 10 } } }));
  assert.equal(first.items.length, 10);
  assert.equal(first.total_count, 12);
  assert.ok(first.cursor, "the first page of 12 keys by 10 has a cursor");
  assert.match(first.cursor, /^[A-Za-z0-9+/]+={0,2}$/, "cursor is standard base64 (format: byte)");
  assert.equal(first.cursor.length % 4, 0, "cursor is padded");

  const seen = [];
  for await (const key of tg.listAPIKeys({ limit: 10 })) seen.push(key.id);
  assert.equal(seen.length, 12);
  assert.deepEqual(new Set(seen), made);
});

test("a batch with another account's dataset: a token and a 404 entry", async () => {
  const tgA = createTilegate({ baseUrl, token: a.token });
  const tgB = createTilegate({ baseUrl, token: b.token });
  const own = await unwrap(tgA.client.POST("/api/datasets/", { body: { name: "roads", kind: "vector" } }));
  const foreign = await unwrap(tgB.client.POST("/api/datasets/", { body: { name: "theirs", kind: "vector" } }));
  const tokens = await tgA.getTileTokens([own.id, foreign.id, own.id]);
  assert.deepEqual(Object.keys(tokens), [own.id, foreign.id]);
  const mine = tokens[own.id];
  const theirs = tokens[foreign.id];
  assert.ok(!isTokenError(mine), "own dataset gets a token");
  assert.equal(mine.kind, "vector");
  assert.ok(isTokenError(theirs), "another account's dataset is an error entry");
  assert.equal(theirs.status, 404);
  assert.equal(theirs.error, "Dataset not found");
});

test("a tile fetched with a token", async () => {
  const tg = createTilegate({ baseUrl, token: a.token });
  const ds = await unwrap(tg.client.POST("/api/datasets/", { body: { name: "tiles", kind: "vector" } }));
  const file = readFileSync(join(tmp, "roads.mbtiles"));
  const uploaded = await unwrap(tg.client.PUT("/api/datasets/{dataset_id}/tiles/", {
    params: { path: { dataset_id: ds.id } },
    body: file,
    bodySerializer: (body) => body,
    headers: { "Content-Type": "application/octet-stream" },
  }));
  assert.equal(uploaded.has_tiles, true);
  const token = await unwrap(tg.client.GET("/api/tiles/token/{dataset_id}/", { params: { path: { dataset_id: ds.id } } }));
  const url = tileURL(token, 0, 0, 0);
  assert.ok(url.startsWith(baseUrl + `/api/tiles/${ds.id}/0/0/0.pbf?`), url);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/vnd.mapbox-vector-tile");
  assert.equal(await res.text(), "tile 0/0/0");
  // Without the token the same tile is refused.
  assert.equal((await fetch(url.split("?")[0])).status, 401);
});

test("a 422 throws TilegateError with FastAPI's detail", async () => {
  const tg = createTilegate({ baseUrl, token: a.token });
  await assert.rejects(
    unwrap(tg.client.POST("/v1/api_keys", { body: { origins: ["example.com", "example.com/path"] } })),
    (err) => {
      assert.ok(err instanceof TilegateError);
      assert.equal(err.status, 422);
      assert.equal(err.validation.length, 1);
      assert.deepEqual(err.validation[0].loc, ["body", "origins", 1]);
      assert.equal(err.validation[0].type, "value_error");
      assert.equal(err.validation[0].input, "example.com/path");
      return true;
    },
  );
  // A plain error keeps its message as detail.
  await assert.rejects(
    unwrap(tg.client.GET("/v1/api_keys/{key_id}", { params: { path: { key_id: "00000000-0000-4000-8000-000000000000" } } })),
    (err) => err instanceof TilegateError && err.status === 404 && err.detail === "API key not found",
  );
});

// Every token, batch entry and TileJSON is a valid MapLibre source as it is ({type: kind, ...t}
// for tokens), checked with MapLibre's own style validator: no null property (MapLibre refuses a
// null attribution), and rasters carry tileSize.
test("tokens, batch entries and TileJSON are valid MapLibre sources", async () => {
  const tg = createTilegate({ baseUrl, token: a.token });
  const made = [
    await unwrap(tg.client.POST("/api/datasets/", { body: { name: "bare vector", kind: "vector" } })),
    await unwrap(tg.client.POST("/api/datasets/", {
      body: { name: "full vector", kind: "vector", attribution: "© <a href=\"https://example.com\">us</a>", bounds: [1, 2, 3, 4] },
    })),
    await unwrap(tg.client.POST("/api/datasets/", { body: { name: "bare raster", kind: "raster", format: "png" } })),
    await unwrap(tg.client.POST("/api/datasets/", { body: { name: "512 raster", kind: "raster", format: "webp", tile_size: 512 } })),
  ];
  const key = await unwrap(tg.client.POST("/v1/api_keys"));
  const sources = {};
  const batch = await tg.getTileTokens(made.map((d) => d.id));
  for (const d of made) {
    const entry = batch[d.id];
    assert.ok(!isTokenError(entry), `${d.name}: a token`);
    sources[`batch ${d.name}`] = { type: entry.kind, ...entry };
    const single = await tg.getTileToken(d.id);
    sources[`token ${d.name}`] = { type: single.kind, ...single };
    const res = await fetch(`${baseUrl}/api/tiles/${d.id}/tilejson.json?key=${key.token}`);
    assert.equal(res.status, 200);
    sources[`tilejson ${d.name}`] = { type: d.kind, ...(await res.json()) };
  }
  const style = { version: 8, sources, layers: [] };
  assert.deepEqual(validateStyleMin(style).map((e) => e.message), []);
  for (const [name, src] of Object.entries(sources)) {
    assert.ok(!Object.values(src).includes(null), `${name}: no null property`);
  }
  assert.equal(sources["batch bare raster"].tileSize, 256);
  assert.equal(sources["batch bare raster"].tile_size, 256, "tile_size stays for the tile-token document's clients");
  assert.equal(sources["token 512 raster"].tileSize, 512);
  assert.equal(sources["tilejson 512 raster"].tileSize, 512);
  assert.equal("attribution" in sources["token bare vector"], false);
  assert.equal(sources["token full vector"].attribution, "© <a href=\"https://example.com\">us</a>");

  // The validator does refuse what the issue saw before: a null attribution.
  const broken = { ...sources["token bare vector"], attribution: null };
  assert.match(validateStyleMin({ version: 8, sources: { broken }, layers: [] })[0].message, /attribution: string expected, null found/);
});
