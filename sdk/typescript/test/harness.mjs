// A real `tilegate serve` (built from this tree, on a scratch SQLite database) for the SDK's
// tests, with the realistic tilesets of internal/testtiles uploaded.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { createTilegate, unwrap } from "../dist/index.js";

export const root = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    }).on("error", fail);
  });
}

/** Starts tilegate with extra environment; returns {baseUrl, account, tmp, tilegate(...args), stop()}. */
export async function startTilegate(env = {}) {
  const tmp = mkdtempSync(join(tmpdir(), "tilegate-sdk-"));
  const bin = join(tmp, "tilegate");
  const dbURL = "sqlite:" + join(tmp, "tilegate.db");
  execFileSync("go", ["build", "-o", bin, "./cmd/tilegate"], { cwd: root, stdio: "inherit" });
  const cli = (...args) => execFileSync(bin, args, { env: { ...process.env, DATABASE_URL: dbURL }, encoding: "utf8" });
  cli("migrate");
  const account = JSON.parse(cli("admin", "create-account", "--name", "sdk"));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`, "--database-url", dbURL,
    "--data-dir", join(tmp, "data"), "--log-level", "error", "--admin-addr", ""],
  { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...env } });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(baseUrl + "/readyz")).ok) break;
    } catch { /* not up yet */ }
    if (i > 300) throw new Error("tilegate serve did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseUrl, account, tmp, cli,
    stop() {
      server.kill();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Writes the realistic tilesets (sdk/typescript/test/mktilesets) and returns their shapes. */
export function makeTilesets(dir) {
  execFileSync("go", ["run", "./sdk/typescript/test/mktilesets", dir], { cwd: root, stdio: "inherit" });
  return JSON.parse(readFileSync(join(dir, "shapes.json"), "utf8"));
}

/** Creates a dataset of the account and uploads an MBTiles file into it. */
export async function uploadDataset(baseUrl, token, body, file) {
  const tg = createTilegate({ baseUrl, token });
  const ds = await unwrap(tg.client.POST("/api/datasets/", { body }));
  await unwrap(tg.client.PUT("/api/datasets/{dataset_id}/tiles/", {
    params: { path: { dataset_id: ds.id } },
    body: readFileSync(file),
    bodySerializer: (b) => b,
    headers: { "Content-Type": "application/octet-stream" },
  }));
  return ds;
}
