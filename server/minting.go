package server

import (
	"context"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/internal/usage"
	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tileurl"
)

// Minting tile tokens without a service token (DESIGN "Who may mint tile tokens"): with an API
// key, for the datasets that key may use, every rule of the key decided by tileaccess.Decide (the
// tile path's one decision); with no credential, for public datasets. The service token path is
// GetTileToken's and GetTileTokensBatch's own (the principal's may-use rules).

// invalidAPIKey is the 401 of a key that is named and unknown (or a rotated key's previous
// token past its grace): a credential present but invalid never degrades into per-dataset errors.
const invalidAPIKey = "Invalid API key"

// mintCredentials reads the API key of a token call: X-Api-Key (GeoLens's header), else ?key=
// (as on tiles). Sent empty, it is a key that is not valid.
func mintCredentials(r *http.Request) tileaccess.Credentials {
	if v := r.Header.Values("X-Api-Key"); len(v) > 0 {
		return tileaccess.Credentials{Key: v[0], HasKey: true}
	}
	if v, ok := r.URL.Query()["key"]; ok && len(v) > 0 {
		return tileaccess.Credentials{Key: v[0], HasKey: true}
	}
	return tileaccess.Credentials{}
}

// limited is a token call refused by a rate limit or quota: answered 429 by handleError.
type limited struct{ usage.Verdict }

func (l limited) Error() string { return "429 " + l.Reason }

// openMint decides ids for a token call without a service token and fills entries (a token, or
// a 404 or 403 with its refusal) in ids' order. It answers by error when the call as a whole is
// refused: 401 for a key that is not valid, 429 over a limit.
func (s *Server) openMint(ctx context.Context, r *http.Request, ids []uuid.UUID, entries []batchEntry) error {
	creds := mintCredentials(r)
	client := tileaccess.Client{Header: r.Header, RemoteAddr: r.RemoteAddr}
	now := s.meter.Now()
	var key *tileaccess.KeyEntry
	if creds.HasKey {
		k, err := s.access.Key(ctx, creds.Key)
		if err != nil {
			return err
		}
		if !k.Found {
			return fail(http.StatusUnauthorized, invalidAPIKey)
		}
		if v := s.meter.Admit(ctx, now, k.ID, k.RateLimit, k.MonthlyQuota); v.Reason != "" {
			return limited{v}
		}
		key = k
	} else if v := s.anonMint.admit(s.access.ClientIP(client), now); v.Reason != "" {
		return limited{v}
	}
	exp, expiresIn := s.signer.Expiry()
	datasets := make([]store.Dataset, len(ids))
	minted := false
	for i, id := range ids {
		e, err := s.access.Dataset(ctx, id)
		if err != nil {
			return err
		}
		if !e.Found {
			entries[i].refusal = tileaccess.RefuseNotFound
			continue
		}
		dec, err := s.access.Authorize(ctx, e, &creds, client, now)
		if err != nil {
			return err
		}
		switch ref := dec.Refusal; {
		case ref == nil:
		case ref.Reason == tileaccess.ReasonUnknownKey:
			// A rotated key's previous token past its grace: not a valid credential.
			return fail(http.StatusUnauthorized, invalidAPIKey)
		case ref.Status == http.StatusForbidden && key != nil:
			s.tileHTTP.CountRefusal(now, e, &creds, ref)
			entries[i].refusal = ref
			continue
		default:
			// No credential for a dataset that is not public, or the key's account does not
			// see it: as far as the caller knows, it does not exist.
			if key != nil {
				s.tileHTTP.CountRefusal(now, e, &creds, ref)
			}
			entries[i].refusal = tileaccess.RefuseNotFound
			continue
		}
		datasets[i] = e.Dataset
		entries[i].token = s.token(&datasets[i], exp, expiresIn)
		if dec.Key != nil {
			s.meter.Served(now, dec.KeyID, id, usage.Key, 0)
			minted = true
		}
	}
	if key != nil && !minted && key.MonthlyQuota != nil {
		s.meter.Release(now, key.ID) // nothing was minted with the key
	}
	return nil
}

// allowAnyOrigin is the Access-Control-Allow-Origin value "*", built once.
var allowAnyOrigin = []string{"*"}

// tokenHeaders lets browser pages call the token endpoints with an API key or none (a map that
// refreshes its own tokens with its public key), and answers their CORS preflight. A request
// with Authorization (a service token, a secret) gets no CORS allowance, and the preflight
// never allows that header: a page cannot send a service token across origins.
func (s *Server) tokenHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if !tileurl.IsTokenEndpoint(r.URL.Path) {
			return next(c)
		}
		h := c.Response().Header()
		if r.Method == http.MethodOptions {
			h["Access-Control-Allow-Origin"] = allowAnyOrigin
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "X-Api-Key, Content-Type, Accept")
			h.Set("Access-Control-Max-Age", "86400")
			return c.NoContent(http.StatusNoContent)
		}
		if r.Header.Get("Authorization") == "" {
			h["Access-Control-Allow-Origin"] = allowAnyOrigin
			h.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason, Retry-After, RateLimit, RateLimit-Policy")
		}
		return next(c)
	}
}
