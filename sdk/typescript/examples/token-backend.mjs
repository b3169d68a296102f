// The backend half of a tilegate map: the app's server turns the dataset ids a page asks for into
// tile tokens with its service token (one batch call), so the browser never holds the service
// token. The app decides which datasets a user may put on a map (allowed); tilegate checks again.
//
//   TILEGATE_URL=https://tiles.example.com TILEGATE_SERVICE_TOKEN=tgs_… node token-backend.mjs
//
// The browser half asks it with:
//   fetchTokens: (ids) => fetch("/tile-tokens", {method: "POST", headers: {"Content-Type": "application/json"},
//                                 body: JSON.stringify({dataset_ids: ids})}).then((r) => r.json())
import { createServer } from "node:http";

import { createTilegate, TilegateError } from "@tilegate/client";

/**
 * A Node request handler for POST {dataset_ids: [...]} answering {tokens: {id: token | {error, status}}}.
 * @param {{baseUrl: string, serviceToken: string, allowed?: (datasetId: string, req: import("node:http").IncomingMessage) => boolean}} opts
 */
export function tileTokenHandler({ baseUrl, serviceToken, allowed = () => true }) {
  const tilegate = createTilegate({ baseUrl, token: serviceToken });
  return async (req, res) => {
    const answer = (status, body) => {
      // Tokens are short-lived and per window: never let a shared cache keep them.
      res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "POST") return answer(405, { detail: "POST {dataset_ids: [...]}" });
    let ids;
    try {
      let raw = "";
      for await (const chunk of req) {
        raw += chunk;
        if (raw.length > 16_384) return answer(413, { detail: "too many dataset ids" });
      }
      ids = JSON.parse(raw).dataset_ids;
    } catch {
      return answer(400, { detail: "the body must be JSON: {dataset_ids: [...]}" });
    }
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > 50 || !ids.every((id) => typeof id === "string")) {
      return answer(400, { detail: "dataset_ids must be 1 to 50 dataset ids" });
    }
    const mine = ids.filter((id) => allowed(id, req));
    const tokens = {};
    for (const id of ids) {
      if (!mine.includes(id)) tokens[id] = { error: "Not allowed to use this dataset", status: 403 };
    }
    try {
      if (mine.length > 0) Object.assign(tokens, await tilegate.getTileTokens(mine));
      return answer(200, { tokens });
    } catch (err) {
      // tilegate's own refusal of the service token (401) or an outage (503): the page retries.
      return answer(502, { detail: err instanceof TilegateError ? err.message : "tilegate unreachable" });
    }
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const handler = tileTokenHandler({ baseUrl: process.env.TILEGATE_URL, serviceToken: process.env.TILEGATE_SERVICE_TOKEN });
  createServer((req, res) => (req.url === "/tile-tokens" ? handler(req, res) : (res.writeHead(404), res.end())))
    .listen(Number(process.env.PORT ?? 3000), "127.0.0.1");
}
