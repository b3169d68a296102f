package server

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/access"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/origin"
	"github.com/tilegate/tilegate/store"
)

const keyNotFound = "API key not found"

func (s *Server) ListAPIKeys(ctx context.Context, req gen.ListAPIKeysRequestObject) (gen.ListAPIKeysResponseObject, error) {
	limit, cur, err := pageParams(req.Params.Limit, req.Params.Cursor)
	if err != nil {
		return nil, err
	}
	since := s.meter.MonthStart()
	page, served, err := s.store.ListAPIKeysServed(ctx, principalFrom(ctx).AccountID, cur, limit, since)
	if err != nil {
		return nil, err
	}
	used := make(map[uuid.UUID]int64, len(page.Items))
	for i, k := range page.Items {
		used[k.ID] = served[i] + s.meter.Pending(k.ID, since)
	}
	return keyPageJSON{page: page, used: used, now: store.Now()}, nil
}

// pageParams reads the paging parameters shared by every list: limit (default 50; the spec
// bounds it) and the opaque cursor (422 when it was not made by this service).
func pageParams(limit *int, cursor *string) (int, *store.Cursor, error) {
	n := 50
	if limit != nil {
		n = *limit
	}
	if cursor == nil || *cursor == "" {
		return n, nil, nil
	}
	cur, err := store.DecodeCursor(*cursor)
	if err != nil {
		return 0, nil, invalid([]any{"query", "cursor"}, *cursor, "invalid cursor")
	}
	return n, &cur, nil
}

func (s *Server) CreateAPIKey(ctx context.Context, req gen.CreateAPIKeyRequestObject) (gen.CreateAPIKeyResponseObject, error) {
	p := principalFrom(ctx)
	k := store.APIKey{Enabled: true}
	var name *string
	// An empty body (no body, Content-Length 0) is every setting at its default, as {} is.
	var in gen.APIKeySettings
	if req.Body != nil {
		in = *req.Body
	}
	if err := applySettings(&k, &name, in, s.now()); err != nil {
		return nil, err
	}
	k, err := s.store.CreateAPIKey(ctx, p.AccountID, name, k)
	if err != nil {
		return nil, keyError(err)
	}
	return gen.CreateAPIKey200JSONResponse(apiKeyOut(k, 0)), nil
}

// keyError turns the store's refusal of a key's dataset scope into the 422 naming the entry.
func keyError(err error) error {
	var de *store.InvalidDatasetError
	if errors.As(err, &de) {
		return invalid([]any{"body", "dataset_ids", de.Index}, de.ID.String(), "not a dataset this account sees")
	}
	return err
}

func (s *Server) GetAPIKey(ctx context.Context, req gen.GetAPIKeyRequestObject) (gen.GetAPIKeyResponseObject, error) {
	k, err := s.store.GetAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	}
	if err != nil {
		return nil, err
	}
	used, err := s.keysUsedThisMonth(ctx, []store.APIKey{k})
	if err != nil {
		return nil, err
	}
	return gen.GetAPIKey200JSONResponse(apiKeyOut(k, used[k.ID])), nil
}

func (s *Server) DeleteAPIKey(ctx context.Context, req gen.DeleteAPIKeyRequestObject) (gen.DeleteAPIKeyResponseObject, error) {
	err := s.store.DeleteAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	}
	if err != nil {
		return nil, err
	}
	return gen.DeleteAPIKey200Response{}, nil
}

func (s *Server) ChangeAPIKeySettings(ctx context.Context, req gen.ChangeAPIKeySettingsRequestObject) (gen.ChangeAPIKeySettingsResponseObject, error) {
	if req.Body == nil || reflect.DeepEqual(*req.Body, gen.APIKeySettings{}) {
		// No body (MapTiler's document makes it optional), or no field in it, changes nothing:
		// the key as it is, without a write, a new `changed` or an audit event.
		k, err := s.GetAPIKey(ctx, gen.GetAPIKeyRequestObject{KeyId: req.KeyId})
		if err != nil {
			return nil, err
		}
		return gen.ChangeAPIKeySettings200JSONResponse(k.(gen.GetAPIKey200JSONResponse)), nil
	}
	// Validate before touching the database, so bad input changes nothing.
	now := s.now()
	var probe store.APIKey
	var probeName *string
	if err := applySettings(&probe, &probeName, *req.Body, now); err != nil {
		return nil, err
	}
	k, err := s.store.UpdateAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId, func(k *store.APIKey) (bool, error) {
		name := &k.Name
		return req.Body.Name.IsNull(), applySettings(k, &name, *req.Body, now)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	}
	if err != nil {
		return nil, keyError(err)
	}
	used, err := s.keysUsedThisMonth(ctx, []store.APIKey{k})
	if err != nil {
		return nil, err
	}
	return gen.ChangeAPIKeySettings200JSONResponse(apiKeyOut(k, used[k.ID])), nil
}

func (s *Server) RotateAPIKey(ctx context.Context, req gen.RotateAPIKeyRequestObject) (gen.RotateAPIKeyResponseObject, error) {
	grace := 86400
	if req.Body != nil && req.Body.GraceSeconds != nil {
		grace = *req.Body.GraceSeconds
	}
	k, err := s.store.RotateAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId, time.Duration(grace)*time.Second)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	}
	if err != nil {
		return nil, err
	}
	used, err := s.keysUsedThisMonth(ctx, []store.APIKey{k})
	if err != nil {
		return nil, err
	}
	return gen.RotateAPIKey200JSONResponse(apiKeyOut(k, used[k.ID])), nil
}

// applySettings merges APIKeySettings into k: an absent field is left as it is, null clears it.
// *name is set to the explicit name, or nil when the name is to be generated.
func applySettings(k *store.APIKey, name **string, in gen.APIKeySettings, now time.Time) error {
	if in.Name.IsSpecified() {
		if in.Name.IsNull() {
			*name = nil
		} else {
			v := in.Name.MustGet()
			*name = &v
			k.Name = v
		}
	}
	if in.Description.IsSpecified() {
		k.Description = optional(in.Description)
	}
	if in.UserAgent.IsSpecified() {
		k.UserAgent = nil
		if ua := optional(in.UserAgent); ua != nil && *ua != "" {
			norm, err := origin.NormalizeUserAgent(*ua)
			if err != nil {
				return invalid([]any{"body", "user_agent"}, *ua, err.Error())
			}
			k.UserAgent = &norm
		}
	}
	if in.Origins.IsSpecified() {
		var list []string
		if !in.Origins.IsNull() {
			list = in.Origins.MustGet()
		}
		norm, err := origin.NormalizeRules(list)
		if err != nil {
			var re *origin.RuleError
			if errors.As(err, &re) {
				return invalid([]any{"body", "origins", re.Index}, re.Value, re.Reason)
			}
			return invalid([]any{"body", "origins"}, list, err.Error())
		}
		k.Origins = norm
	}
	applyLimits(k, in)
	return applyLifecycle(k, in, now)
}

// applyLifecycle merges the lifecycle settings (issue #10) as applySettings does the others.
func applyLifecycle(k *store.APIKey, in gen.APIKeySettings, now time.Time) error {
	if in.ExpiresAt.IsSpecified() {
		k.ExpiresAt = nil
		if at, err := in.ExpiresAt.Get(); err == nil {
			if !at.After(now) {
				return invalid([]any{"body", "expires_at"}, at.Format(time.RFC3339Nano), "must be in the future")
			}
			at = at.UTC()
			k.ExpiresAt = &at
		}
	}
	if in.Enabled.IsSpecified() {
		k.Enabled = true
		if v, err := in.Enabled.Get(); err == nil {
			k.Enabled = v
		}
	}
	if in.DatasetIds.IsSpecified() {
		k.DatasetIDs = nil
		if ids, err := in.DatasetIds.Get(); err == nil {
			k.DatasetIDs = append([]uuid.UUID{}, ids...)
		}
	}
	if in.IpRanges.IsSpecified() {
		k.IPRanges = nil
		if list, err := in.IpRanges.Get(); err == nil {
			norm, err := access.NormalizeRanges(list)
			var re *access.RangeError
			if errors.As(err, &re) {
				return invalid([]any{"body", "ip_ranges", re.Index}, re.Value, re.Error())
			}
			ranges := store.StringList(norm)
			k.IPRanges = &ranges
		}
	}
	return nil
}

// applyLimits merges the rate limit and monthly quota of APIKeySettings into k (the spec bounds
// their values): absent is unchanged, null is none.
func applyLimits(k *store.APIKey, in gen.APIKeySettings) {
	if in.RateLimit.IsSpecified() {
		k.RateLimitRPS, k.RateLimitBurst = nil, nil
		if rl, err := in.RateLimit.Get(); err == nil {
			rps, burst := rl.RequestsPerSecond, rl.Burst
			k.RateLimitRPS, k.RateLimitBurst = &rps, &burst
		}
	}
	if in.MonthlyQuota.IsSpecified() {
		k.MonthlyQuota = nil
		if q, err := in.MonthlyQuota.Get(); err == nil {
			k.MonthlyQuota = &q
		}
	}
}

func optional(n nullable.Nullable[string]) *string {
	if !n.IsSpecified() || n.IsNull() {
		return nil
	}
	v := n.MustGet()
	return &v
}

// apiKeyOut is a key as the API shows it; used is its usage this month.
func apiKeyOut(k store.APIKey, used int64) gen.APIKey {
	out := gen.APIKey{
		Id: k.ID, Token: k.Token, Name: k.Name, Origins: k.Origins,
		Created: k.Created, Changed: k.Changed,
		Description: nullableOf(k.Description), UserAgent: nullableOf(k.UserAgent),
		LastUsed:  nullable.NewNullNullable[time.Time](),
		ExpiresAt: nullableOf(k.ExpiresAt), Enabled: k.Enabled,
		DatasetIds:             nullable.NewNullNullable[[]uuid.UUID](),
		IpRanges:               nullable.NewNullNullable[[]string](),
		PreviousTokenExpiresAt: nullable.NewNullNullable[time.Time](),
		RateLimit:              nullable.NewNullNullable[gen.RateLimit](),
		MonthlyQuota:           nullableOf(k.MonthlyQuota), UsageThisMonth: used,
	}
	if k.RateLimitRPS != nil && k.RateLimitBurst != nil {
		out.RateLimit = nullable.NewNullableWithValue(gen.RateLimit{RequestsPerSecond: *k.RateLimitRPS, Burst: *k.RateLimitBurst})
	}
	if out.Origins == nil {
		out.Origins = []string{}
	}
	if k.LastUsed != nil {
		out.LastUsed = nullable.NewNullableWithValue(*k.LastUsed)
	}
	if k.DatasetScoped {
		ids := k.DatasetIDs
		if ids == nil {
			ids = []uuid.UUID{}
		}
		out.DatasetIds = nullable.NewNullableWithValue(ids)
	}
	if k.IPRanges != nil {
		out.IpRanges = nullable.NewNullableWithValue([]string(*k.IPRanges))
	}
	// A previous token past its grace no longer works: nothing to show.
	if k.PreviousTokenExpiresAt != nil && k.PreviousTokenExpiresAt.After(store.Now()) {
		out.PreviousTokenExpiresAt = nullable.NewNullableWithValue(*k.PreviousTokenExpiresAt)
	}
	return out
}

func nullableOf[T any](v *T) nullable.Nullable[T] {
	if v == nil {
		return nullable.NewNullNullable[T]()
	}
	return nullable.NewNullableWithValue(*v)
}
