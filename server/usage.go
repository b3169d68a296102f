package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
)

// maxUsageBuckets bounds a usage answer (422 beyond).
const maxUsageBuckets = 1000

// defaultUsagePeriod is the period of a usage request without from.
const defaultUsagePeriod = 7 * 24 * time.Hour

// usagePeriod resolves a usage request's period into a store query: from and to default to the
// last 7 days; from is rounded down to its bucket's start.
func (s *Server) usagePeriod(from, to *time.Time, g *gen.Granularity) (store.UsageQuery, gen.Granularity, error) {
	gran := gen.Hour
	if g != nil {
		gran = *g
	}
	bucket := int64(3600)
	if gran == gen.Day {
		bucket = 86400
	}
	end := s.meter.Now()
	if to != nil {
		end = *to
	}
	start := end.Add(-defaultUsagePeriod)
	if from != nil {
		start = *from
	}
	if !end.After(start) {
		return store.UsageQuery{}, gran, invalid([]any{"query", "to"}, end.Format(time.RFC3339), "to must be after from")
	}
	q := store.UsageQuery{From: max(0, start.Unix()), To: max(0, end.Unix()), Bucket: bucket}
	q.From -= q.From % bucket
	if n := (q.To - q.From + bucket - 1) / bucket; n > maxUsageBuckets {
		return q, gran, invalid([]any{"query", "from"}, start.Format(time.RFC3339),
			fmt.Sprintf("the period spans %d %ss; at most %d buckets", n, gran, maxUsageBuckets))
	}
	return q, gran, nil
}

func (s *Server) GetAPIKeyUsage(ctx context.Context, req gen.GetAPIKeyUsageRequestObject) (gen.GetAPIKeyUsageResponseObject, error) {
	if _, err := s.store.GetAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId); errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	} else if err != nil {
		return nil, err
	}
	q, gran, err := s.usagePeriod(req.Params.From, req.Params.To, req.Params.Granularity)
	if err != nil {
		return nil, err
	}
	q.KeyID = &req.KeyId
	rows, err := s.store.Usage(ctx, q)
	if err != nil {
		return nil, err
	}
	out := gen.GetAPIKeyUsage200JSONResponse{KeyId: req.KeyId, Granularity: gran, Items: []gen.KeyUsageItem{}}
	for _, r := range rows {
		n := len(out.Items)
		if n == 0 || out.Items[n-1].Start.Unix() != r.Start {
			out.Items = append(out.Items, gen.KeyUsageItem{Start: time.Unix(r.Start, 0).UTC(),
				Refused: gen.UsageCounts{}, Datasets: gen.UsageCounts{}})
			n++
		}
		it := &out.Items[n-1]
		it.Served += r.Served
		it.Bytes += r.Bytes
		if r.Reason != "" {
			it.Refused[r.Reason] += r.Refused
		} else if r.Served > 0 {
			it.Datasets[r.DatasetID.String()] += r.Served
		}
	}
	return out, nil
}

func (s *Server) GetDatasetUsage(ctx context.Context, req gen.GetDatasetUsageRequestObject) (gen.GetDatasetUsageResponseObject, error) {
	c := callerOf(ctx)
	a, err := s.store.DatasetAccessOne(ctx, c, req.DatasetId)
	if err == nil {
		err = a.Own(c)
	}
	if status, err := accessStatus(err); err != nil {
		return nil, err
	} else if status != 0 {
		// Only the owner sees usage; to every other account (shared with or not) it does not exist.
		return nil, notFound()
	}
	q, gran, err := s.usagePeriod(req.Params.From, req.Params.To, req.Params.Granularity)
	if err != nil {
		return nil, err
	}
	q.DatasetID = &req.DatasetId
	rows, err := s.store.Usage(ctx, q)
	if err != nil {
		return nil, err
	}
	out := gen.GetDatasetUsage200JSONResponse{DatasetId: req.DatasetId, Granularity: gran, Items: []gen.DatasetUsageItem{}}
	for _, r := range rows {
		n := len(out.Items)
		if n == 0 || out.Items[n-1].Start.Unix() != r.Start {
			out.Items = append(out.Items, gen.DatasetUsageItem{Start: time.Unix(r.Start, 0).UTC(),
				Refused: gen.UsageCounts{}, Keys: gen.UsageCounts{}})
			n++
		}
		it := &out.Items[n-1]
		it.Served += r.Served
		it.Bytes += r.Bytes
		switch {
		case r.Reason != "":
			it.Refused[r.Reason] += r.Refused
		case r.Credential == store.CredentialToken:
			it.Tokens += r.Served
		case r.Credential == store.CredentialPublic:
			it.Public += r.Served
		case r.Served > 0:
			it.Keys[r.KeyID.String()] += r.Served
		}
	}
	return out, nil
}

// keysUsedThisMonth is each key's usage_this_month: what every replica wrote, plus what this one
// has not written yet. One statement for any number of keys.
func (s *Server) keysUsedThisMonth(ctx context.Context, keys []store.APIKey) (map[uuid.UUID]int64, error) {
	ids := make([]uuid.UUID, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	since := s.meter.MonthStart()
	written, err := s.store.ServedSince(ctx, ids, since)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]int64, len(ids))
	for _, id := range ids {
		out[id] = written[id] + s.meter.Pending(id, since)
	}
	return out, nil
}
