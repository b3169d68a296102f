// tilegate client: the generated types (schema.ts, from openapi.yaml by openapi-typescript) on
// openapi-fetch, plus what the types alone make awkward: paging, the batch token union, tile URLs
// and errors that carry the API's `detail`.
import createClient, { type Client, type ClientOptions } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths, operations } from "./schema.js";

type Schemas = components["schemas"];
export type APIKey = Schemas["APIKey"];
export type APIKeySettings = Schemas["APIKeySettings"];
export type Dataset = Schemas["Dataset"];
export type DatasetCreate = Schemas["DatasetCreate"];
export type DatasetUpdate = Schemas["DatasetUpdate"];
export type Grant = Schemas["Grant"];
export type VectorTileToken = Schemas["VectorTileToken"];
export type RasterTileToken = Schemas["RasterTileToken"];
export type TileToken = VectorTileToken | RasterTileToken;
export type TileTokenError = Schemas["TileTokenError"];
/** One entry of a batch answer: a token, or why the dataset got none (403/404). */
export type TileTokenEntry = TileToken | TileTokenError;
export type ValidationError = Schemas["ValidationError"];

/** True when a batch entry is an error rather than a token. */
export function isTokenError(entry: TileTokenEntry): entry is TileTokenError {
  return "error" in entry;
}

/**
 * An error answer of the API. `detail` is the message, or for a 422 the FastAPI list of
 * `{loc, msg, type, input, ctx}` items (also in `validation`).
 */
export class TilegateError extends Error {
  readonly status: number;
  readonly detail: string | ValidationError[];
  readonly validation: ValidationError[];

  constructor(status: number, detail: string | ValidationError[]) {
    const message = typeof detail === "string"
      ? detail
      : detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
    super(`tilegate ${status}: ${message}`);
    this.name = "TilegateError";
    this.status = status;
    this.detail = detail;
    this.validation = Array.isArray(detail) ? detail : [];
  }
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** Returns a call's data, or throws TilegateError with the API's detail. */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) {
    const detail = (error as { detail?: unknown } | undefined)?.detail;
    throw new TilegateError(
      response.status,
      typeof detail === "string" || Array.isArray(detail) ? (detail as string | ValidationError[]) : response.statusText,
    );
  }
  return data as T;
}

export interface TilegateOptions extends Omit<ClientOptions, "baseUrl"> {
  /** Where tilegate serves, e.g. https://tiles.example.com */
  baseUrl: string;
  /** A service token (tgs_…), sent as `Authorization: Bearer`. */
  token?: string;
}

export interface Tilegate {
  /** The generated, fully typed client for every operation. */
  client: Client<paths>;
  /** Every API key of the account, fetching page after page. */
  listAPIKeys(opts?: { limit?: number }): AsyncGenerator<APIKey>;
  /** Every dataset the account sees, fetching page after page. */
  listDatasets(opts?: { limit?: number }): AsyncGenerator<Dataset>;
  /** Tile tokens for up to 50 datasets: one entry per distinct id (use isTokenError). */
  getTileTokens(datasetIds: string[]): Promise<Record<string, TileTokenEntry>>;
  /** The tile token of one dataset (throws TilegateError on 403/404). */
  getTileToken(datasetId: string): Promise<TileToken>;
}

export function createTilegate(opts: TilegateOptions): Tilegate {
  const { token, headers, ...rest } = opts;
  const client = createClient<paths>({
    ...rest,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(headers as Record<string, string> | undefined) },
  });
  return {
    client,
    async *listAPIKeys({ limit } = {}) {
      let cursor: string | undefined;
      do {
        const page = await unwrap(client.GET("/v1/api_keys", { params: { query: { limit, cursor } } }));
        yield* page.items;
        cursor = page.cursor ?? undefined;
      } while (cursor);
    },
    async *listDatasets({ limit } = {}) {
      let cursor: string | undefined;
      do {
        const page = await unwrap(client.GET("/api/datasets/", { params: { query: { limit, cursor } } }));
        yield* page.items as Dataset[]; // openapi-fetch's Readable<> widens tuples (bounds) to arrays
        cursor = page.cursor ?? undefined;
      } while (cursor);
    },
    async getTileTokens(datasetIds) {
      const res = await unwrap(client.POST("/api/tiles/tokens/", { body: { dataset_ids: datasetIds } }));
      // The schema's types, whose bounds is a 4-tuple as MapLibre wants it (openapi-fetch's
      // Readable<> widens tuples to arrays).
      return res.tokens as Record<string, TileTokenEntry>;
    },
    async getTileToken(datasetId) {
      const res = await unwrap(client.GET("/api/tiles/token/{dataset_id}/", { params: { path: { dataset_id: datasetId } } }));
      return res as TileToken;
    },
  };
}

/** The URL of tile z/x/y from a token's first (signed, absolute) tile template. */
export function tileURL(token: TileToken, z: number, x: number, y: number): string {
  const template = token.tiles[0];
  if (!template) throw new Error("tile token has no tile template");
  return template.replace("{z}", String(z)).replace("{x}", String(x)).replace("{y}", String(y));
}
