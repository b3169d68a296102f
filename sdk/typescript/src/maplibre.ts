// @tilegate/client/maplibre: tilegate datasets on a MapLibre GL JS map, in the browser.
//
// The browser never holds a service token: the app's own backend turns dataset ids into tile
// tokens (the batch endpoint, one call) and the page hands this helper a function that asks it.
// The helper adds one source per dataset from one batch, refreshes every token ahead of expiry
// in one batch, and rewrites tile URLs to the current token in the map's transformRequest, so
// tiles already drawn stay (no source reload, no flicker) and no tile is requested with an
// expired token. A refused tile's reason (X-Tilegate-Reason) is reported once per dataset and
// reason, as a "refused" event and a console warning that says what to fix.
//
// This module has no runtime import (MapLibre's types only), so a page can load it as is.
import type { Map as MapLibreMap, RequestParameters, RequestTransformFunction, ResourceType } from "maplibre-gl";
import type { components } from "./schema.js";

type Schemas = components["schemas"];
type TileToken = Schemas["VectorTileToken"] | Schemas["RasterTileToken"];
type TileTokenEntry = TileToken | Schemas["TileTokenError"];

/** Asks the app's backend for the tokens of these datasets (it calls POST /api/tiles/tokens/). */
export type FetchTokens = (datasetIds: string[]) => Promise<{ tokens: Record<string, TileTokenEntry> } | Record<string, TileTokenEntry>>;

/** A refused tile, TileJSON or token: what the server said and what to do about it. */
export interface Refusal {
  datasetId: string;
  sourceId: string;
  status: number;
  /** X-Tilegate-Reason (origin, expired, rate_limited, …), or "not_found" / "forbidden" for a batch entry. */
  reason: string;
  /** The server's own explanation ({"detail"}), when it sent one. */
  detail: string;
  /** The console warning: the dataset, the reason and what to fix. */
  message: string;
}

export interface TilegateMapOptions {
  fetchTokens?: FetchTokens;
  /**
   * Seconds before a token's expiry to fetch the next ones (default: a tenth of its lifetime,
   * between 1 and 30 s). tilegate hands out the next window's token only in the last part of a
   * window; when it hands back the same one, the helper asks again closer to expiry.
   */
  refreshAhead?: number;
  /** Where warnings go (default console.warn). */
  warn?: (message: string) => void;
  /** A transformRequest of the app's own, applied after the helper's. */
  transformRequest?: RequestTransformFunction;
}

export interface TilegateMap {
  /** Adds one source per dataset (source id = dataset id unless mapped) from one batch call. */
  addDatasets(datasetIds: string[], opts?: { sourceId?: (datasetId: string) => string }): Promise<Record<string, TileToken>>;
  /** Adds a source from a TileJSON URL carrying an API key (?key=); keys do not expire. */
  addTileJSON(sourceId: string, tileJSONURL: string, kind?: "vector" | "raster"): void;
  /** Fetches every dataset's token now, in one batch call (the helper does it before expiry). */
  refresh(): Promise<void>;
  /** "refused": a Refusal, once per dataset and reason. "tokens": after every batch. "error": a failed batch. */
  on(type: "refused", listener: (r: Refusal) => void): () => void;
  on(type: "tokens", listener: (tokens: Record<string, TileToken>) => void): () => void;
  on(type: "error", listener: (err: unknown) => void): () => void;
  /** Stops refreshing and listening (the sources stay). */
  remove(): void;
}

/** What a refusal reason means for the person who set up the map. */
const advice: Record<string, string> = {
  origin: "add this page's origin to the API key's origins",
  unknown_origin: "the request carried neither Origin nor Referer: add '?' to the key's origins or keep the Referer (Referrer-Policy)",
  user_agent: "the API key's user_agent rule does not match this browser",
  expired: "the tile token expired: the backend must answer fetchTokens with fresh tokens (check its clock and that it does not cache tokens)",
  scope: "access to the dataset changed (visibility, grants): fetch new tokens",
  bad_signature: "the token's signature does not verify: tilegate's signing keys changed, or the URL was altered",
  missing: "the dataset is not public: give an API key (?key=) or tile tokens",
  malformed: "sig, exp and scope must be passed as the token endpoint returned them",
  unknown_key: "the API key does not exist (deleted or mistyped)",
  restricted: "restricted datasets take tile tokens only, not API keys",
  key_expired: "the API key has expired: extend its expires_at or use another key",
  key_disabled: "the API key is disabled",
  dataset_not_allowed: "the API key's dataset_ids do not list this dataset",
  ip: "the client address is in none of the API key's ip_ranges",
  rate_limited: "the API key's rate limit was reached: raise it or load fewer tiles",
  quota_exceeded: "the API key's monthly quota is used up",
  not_found: "the dataset does not exist or the backend's service token does not see it",
  forbidden: "the backend's service token may not use this dataset",
};

const tokenParams = ["sig", "exp", "scope"];

export function tilegateMap(map: MapLibreMap, options: TilegateMapOptions = {}): TilegateMap {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const listeners = { refused: new Set<(r: Refusal) => void>(), tokens: new Set<(t: Record<string, TileToken>) => void>(), error: new Set<(e: unknown) => void>() };
  const tokens = new Map<string, TileToken>(); // dataset id → its current token
  const sourceOf = new Map<string, string>(); // dataset id → source id
  const datasetOfSource = new Map<string, string>();
  const reported = new Set<string>(); // dataset + reason already reported
  const probing = new Set<string>(); // datasets with a reason lookup in flight
  let timer: ReturnType<typeof setTimeout> | undefined;
  let deadline = 0; // local time (ms) the current tokens expire
  let removed = false;

  const emit = (type: keyof typeof listeners, value: unknown) => {
    for (const l of listeners[type]) (l as (v: unknown) => void)(value);
  };

  // Tile URLs of a dataset with a token get the current token's query, whatever token the
  // source was added with: no source reload, so drawn tiles stay.
  const transform: RequestTransformFunction = (url: string, type?: ResourceType) => {
    let out: RequestParameters | undefined;
    if (type === "Tile") {
      const id = datasetInURL(url);
      const t = id ? tokens.get(id) : undefined;
      if (t) {
        const u = new URL(url);
        if (u.searchParams.has("sig")) {
          const fresh = new URL(t.tiles[0] ?? url);
          for (const p of tokenParams) u.searchParams.set(p, fresh.searchParams.get(p) ?? "");
          out = { url: u.toString() };
        }
      }
    }
    if (options.transformRequest) {
      return options.transformRequest(out?.url ?? url, type) ?? out;
    }
    return out;
  };
  map.setTransformRequest(transform);

  const onError = (e: { sourceId?: string; error?: { status?: number; url?: string } }) => {
    const sourceId = e.sourceId;
    const status = e.error?.status;
    const url = e.error?.url;
    if (!sourceId || !url || !(status === 401 || status === 403 || status === 429)) return;
    const datasetId = datasetOfSource.get(sourceId) ?? datasetInURL(url) ?? sourceId;
    if (probing.has(datasetId)) return;
    probing.add(datasetId);
    void lookUpReason(url).then(({ reason, detail }) => {
      report({ datasetId, sourceId, status, reason: reason || `http_${status}`, detail });
    }).finally(() => setTimeout(() => probing.delete(datasetId), 10_000)); // one lookup per dataset per 10 s
  };
  map.on("error", onError as never);

  function report(r: Omit<Refusal, "message">) {
    const key = `${r.datasetId}\u0000${r.reason}`;
    if (reported.has(key)) return;
    reported.add(key);
    const fix = advice[r.reason] ?? (r.detail || "see the response's detail");
    const message = `tilegate: dataset ${r.datasetId} (source "${r.sourceId}") refused ${r.status} ${r.reason}: ${fix}` +
      (r.detail && advice[r.reason] ? ` (server: ${r.detail})` : "");
    warn(message);
    emit("refused", { ...r, message });
  }

  async function batch(ids: string[]): Promise<Record<string, TileToken>> {
    if (!options.fetchTokens) throw new Error("tilegateMap: fetchTokens is required for tile tokens");
    const answer = await options.fetchTokens(ids);
    const entries = ("tokens" in answer && typeof answer.tokens === "object" ? answer.tokens : answer) as Record<string, TileTokenEntry>;
    const got: Record<string, TileToken> = {};
    const received = Date.now();
    let earliest = Infinity;
    for (const id of ids) {
      const entry = entries[id.toLowerCase()] ?? entries[id];
      const sourceId = sourceOf.get(id) ?? id;
      if (!entry) {
        report({ datasetId: id, sourceId, status: 0, reason: "missing_entry", detail: "the backend's answer has no entry for this dataset" });
        continue;
      }
      if ("error" in entry) {
        report({ datasetId: id, sourceId, status: entry.status, reason: entry.status === 404 ? "not_found" : "forbidden", detail: entry.error });
        continue;
      }
      tokens.set(id, entry);
      got[id] = entry;
      earliest = Math.min(earliest, received + entry.expires_in * 1000);
    }
    if (earliest !== Infinity) {
      const previous = deadline;
      deadline = earliest;
      schedule(deadline === previous);
    }
    emit("tokens", got);
    return got;
  }

  // The next refresh: refreshAhead before expiry, or, when the last one brought back the same
  // tokens (tilegate switches to the next window only near its end), halfway to expiry.
  function schedule(sameAsBefore: boolean) {
    if (removed) return;
    clearTimeout(timer);
    const remaining = deadline - Date.now();
    const first = tokens.values().next().value as TileToken | undefined;
    const ahead = (options.refreshAhead ?? Math.min(30, Math.max(1, (first?.expires_in ?? 10) / 10))) * 1000;
    const wait = sameAsBefore ? Math.max(remaining / 2, 100) : Math.max(remaining - ahead, 0);
    timer = setTimeout(() => {
      refresh().catch((err: unknown) => {
        emit("error", err);
        warn(`tilegate: fetching tile tokens failed: ${String(err)}; retrying`);
        schedule(true);
      });
    }, wait);
  }

  async function refresh(): Promise<void> {
    if (tokens.size > 0) await batch([...tokens.keys()]);
  }

  return {
    async addDatasets(datasetIds, opts = {}) {
      for (const id of datasetIds) {
        const sourceId = opts.sourceId?.(id) ?? id;
        sourceOf.set(id, sourceId);
        datasetOfSource.set(sourceId, id);
      }
      const all = [...new Set([...tokens.keys(), ...datasetIds])];
      const got = await batch(all);
      for (const id of datasetIds) {
        const t = got[id];
        if (t) map.addSource(sourceOf.get(id) ?? id, { type: t.kind, ...t });
      }
      return Object.fromEntries(datasetIds.filter((id) => got[id]).map((id) => [id, got[id] as TileToken]));
    },
    addTileJSON(sourceId, tileJSONURL, kind = "vector") {
      const id = datasetInURL(tileJSONURL);
      if (id) datasetOfSource.set(sourceId, id);
      map.addSource(sourceId, { type: kind, url: tileJSONURL });
    },
    refresh,
    on(type: keyof typeof listeners, listener: (v: never) => void) {
      const set = listeners[type] as Set<(v: never) => void>;
      set.add(listener);
      return () => set.delete(listener);
    },
    remove() {
      removed = true;
      clearTimeout(timer);
      map.off("error", onError as never);
      map.setTransformRequest(options.transformRequest ?? null);
    },
  };
}

/** The dataset id of a tilegate tile or TileJSON URL (/api/tiles/{id}/…). */
function datasetInURL(url: string): string | undefined {
  const m = /\/api\/tiles\/([0-9a-fA-F-]{36})\//.exec(url);
  return m?.[1]?.toLowerCase();
}

/** Asks the refused URL again to read the reason: MapLibre's error event has the status only. */
async function lookUpReason(url: string): Promise<{ reason: string; detail: string }> {
  try {
    const res = await fetch(url, { cache: "no-store" });
    const reason = res.headers.get("X-Tilegate-Reason") ?? "";
    let detail = "";
    try {
      const body = (await res.json()) as { detail?: unknown };
      if (typeof body.detail === "string") detail = body.detail;
    } catch { /* not JSON */ }
    return { reason, detail };
  } catch (err) {
    return { reason: "", detail: String(err) };
  }
}
