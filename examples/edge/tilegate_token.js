// tilegate tile-token check at the edge, for nginx's njs module (ngx_http_js_module).
//
// It verifies a tilegate tile token in a tile URL with tilegate's HMAC rule, so an edge cache can
// refuse forged, tampered or expired token URLs without asking tilegate, and serve valid ones from
// its cache:
//
//   scope = "<account_id>:<dataset_id>:<access_version>"
//   sig   = lowercase hex(HMAC-SHA256(K, scope + ":" + exp))
//
// What it cannot see: a dataset's access_version. A token retired in tilegate (visibility or grant
// change, dataset deleted) is still accepted here until its exp, at most one token window plus
// the 60 s minimum (960 s by default). Requests without a token (API keys, public datasets) are not
// judged here: they pass to tilegate, which decides.
//
// Configuration (nginx variables, set with js_var or set):
//   $tilegate_signing_keys  TILEGATE_SIGNING_KEYS' value, "id:hex,id:hex" (every key verifies)
//   $tilegate_token_window  the token window in seconds (default 900)
//
// Usage: js_import token from tilegate_token.js; js_set $tilegate_token token.verdictOf; then
// refuse in the tile location by $tilegate_token (see nginx.conf beside this file).

const crypto = require('crypto');

const SIG_RE = /^[0-9a-f]{64}$/;
const EXP_RE = /^(0|[1-9][0-9]{0,11})$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function keys(r) {
    const raw = r.variables.tilegate_signing_keys || '';
    return raw.split(',').map(function (e) {
        const i = e.indexOf(':');
        return i < 0 ? null : Buffer.from(e.slice(i + 1).trim(), 'hex');
    }).filter(function (k) { return k && k.length >= 16; });
}

// equal compares two strings of the same alphabet in time independent of where they differ.
function equal(a, b) {
    if (a.length !== b.length) {
        return false;
    }
    let diff = 0;
    for (let i = 0; i < a.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

function param(args, name) {
    const v = args[name];
    return Array.isArray(v) ? null : v; // a repeated parameter is refused, as tilegate does
}

// verdict returns "" for a token that verifies, "none" when the request carries no token, or
// the reason it is refused.
function verdict(r, uri, args) {
    const sig = param(args, 'sig'), exp = param(args, 'exp'), scope = param(args, 'scope');
    if (sig === undefined && exp === undefined && scope === undefined) {
        return 'none';
    }
    if (!sig || !exp || !scope || !SIG_RE.test(sig) || !EXP_RE.test(exp)) {
        return 'malformed';
    }
    const m = /^\/api\/tiles\/([^/]+)\/[0-9]+\/[0-9]+\/[0-9]+\.[a-z0-9]+$/.exec(uri);
    if (!m) {
        return 'malformed';
    }
    const parts = scope.split(':');
    if (parts.length !== 3 || !UUID_RE.test(parts[1]) || parts[1] !== m[1].toLowerCase()) {
        return 'scope';
    }
    const now = Math.floor(Date.now() / 1000);
    const window = parseInt(r.variables.tilegate_token_window || '900', 10);
    const e = parseInt(exp, 10);
    if (e <= now) {
        return 'expired';
    }
    // The longest lifetime tilegate mints (a window plus the minimum remaining), plus 30 s of skew.
    if (e > now + window + Math.ceil(window / 15) + 30) {
        return 'expired';
    }
    const ks = keys(r);
    for (let i = 0; i < ks.length; i++) {
        const want = crypto.createHmac('sha256', ks[i]).update(scope + ':' + exp).digest('hex');
        if (equal(want, sig)) {
            return '';
        }
    }
    return 'bad_signature';
}

// verdictOf is a js_set handler: "ok" for a token that verifies, "none" for a request without a
// token (tilegate decides those), or the reason a token is refused — tilegate's own reasons:
// "malformed" (tilegate answers 401), "expired", "bad_signature", "scope" (403).
function verdictOf(r) {
    const uri = r.variables.request_uri;
    const q = uri.indexOf('?');
    const path = q < 0 ? uri : uri.slice(0, q);
    const args = q < 0 ? {} : require('querystring').parse(uri.slice(q + 1));
    const v = verdict(r, path, args);
    return v === '' ? 'ok' : v;
}

export default { verdictOf };
