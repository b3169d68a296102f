package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/servicetoken"
	"github.com/tilegate/tilegate/store"
)

// Principal is the authenticated caller of a management request.
type Principal struct {
	ID        uuid.UUID
	AccountID uuid.UUID
	Role      string
	Name      string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	// The store records who changed what in the audit trail.
	ctx = store.WithActor(ctx, store.Actor{ID: p.ID, Name: p.Name})
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the caller; the contract middleware guarantees one on secured operations.
func principalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

var errUnauthenticated = errors.New("missing or invalid service token")

// credentials resolves service tokens, caching lookups (negative ones too, so a flood of
// well-formed but unknown tokens costs one query each per TTL, not one per request).
type credentials struct {
	store *store.Store
	cache *expirable.LRU[string, cachedCredential]
}

type cachedCredential struct {
	cred  store.Credential
	found bool
}

func newCredentials(st *store.Store, ttl time.Duration) *credentials {
	return &credentials{store: st, cache: expirable.NewLRU[string, cachedCredential](10_000, nil, ttl)}
}

// authenticate accepts "Bearer <token>" and MapTiler's "Token <token>". A malformed token is
// refused before any query; a well-formed one is checked against its stored SHA-256 in constant time.
func (c *credentials) authenticate(ctx context.Context, header string) (Principal, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Token")) {
		return Principal{}, errUnauthenticated
	}
	lookupID, hash, err := servicetoken.Parse(strings.TrimSpace(token))
	if err != nil {
		return Principal{}, errUnauthenticated
	}
	entry, ok := c.cache.Get(lookupID)
	if !ok {
		cred, err := c.store.LookupCredential(ctx, lookupID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			entry = cachedCredential{}
		case err != nil:
			return Principal{}, err
		default:
			entry = cachedCredential{cred: cred, found: true}
		}
		c.cache.Add(lookupID, entry)
	}
	if !entry.found || !servicetoken.Equal(entry.cred.SecretHash, hash) || entry.cred.Revoked {
		return Principal{}, errUnauthenticated
	}
	return Principal{ID: entry.cred.PrincipalID, AccountID: entry.cred.AccountID, Role: entry.cred.Role, Name: entry.cred.Name}, nil
}

func (s *Server) authFailure(c echo.Context, err error) error {
	if errors.Is(err, errUnauthenticated) {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tilegate"`)
		return detail(c, http.StatusUnauthorized, "Missing or invalid service token")
	}
	return err
}
