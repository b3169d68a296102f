// Compiled by `npm test` (tsc -p tsconfig.check.json): request bodies type-check with
// openapi-typescript's default output, as a user writes them.
import type { Map as MapLibreMap } from "maplibre-gl";
import { createTilegate, isTokenError, type APIKey, type TileToken, type TileTokenEntry } from "../src/index.js";

const { client } = createTilegate({ baseUrl: "http://127.0.0.1:8080", token: "tgs_x" });

export async function typecheck(key: APIKey): Promise<void> {
  // Fields with server-side defaults (minzoom, maxzoom, visibility, format) may be left out.
  await client.POST("/api/datasets/", { body: { name: "roads", kind: "vector" } });
  // A key as fetched can be posted back with a change (its read-only fields are accepted).
  await client.POST("/v1/api_keys/{key_id}/change_settings", {
    params: { path: { key_id: key.id } },
    body: { ...key, name: "renamed" },
  });
  // No body at all: every setting at its default.
  await client.POST("/v1/api_keys");
  // The tile token's exp is a number, as the token endpoint returns it.
  await client.GET("/api/tiles/{dataset_id}/tilejson.json", {
    params: { path: { dataset_id: key.id }, query: { exp: 1_700_000_100, sig: "s", scope: "a:b:1" } },
  });
}

// The README's token line compiles under `strict`: a token (or a batch entry that is not an
// error) is a MapLibre source as it is.
export function addTokenSources(map: MapLibreMap, tokens: Record<string, TileTokenEntry>): void {
  for (const [id, t] of Object.entries(tokens)) {
    if (isTokenError(t)) continue;
    map.addSource(id, { type: t.kind, ...t });
  }
}

export function addOne(map: MapLibreMap, t: TileToken): void {
  map.addSource(t.dataset_id, { type: t.kind, ...t });
}
