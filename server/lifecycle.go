package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"github.com/oapi-codegen/nullable"

	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/store"
)

// now is the clock of key expiry.
func (s *Server) now() time.Time { return s.cfg.Now() }

// CheckAPIKey answers what a tile request with the key's current token and the given headers
// would get now: it calls the tile path's own decision (tileaccess.Decide) on the tile path's
// own cached dataset and key, so the two cannot disagree.
func (s *Server) CheckAPIKey(ctx context.Context, req gen.CheckAPIKeyRequestObject) (gen.CheckAPIKeyResponseObject, error) {
	in := req.Body
	cl := tileaccess.Client{Header: http.Header{}}
	if in.Ip != nil {
		ip, err := netip.ParseAddr(*in.Ip)
		if err != nil || ip.Zone() != "" {
			return nil, invalid([]any{"body", "ip"}, *in.Ip, "not an IPv4 or IPv6 address")
		}
		cl.RemoteAddr = net.JoinHostPort(ip.String(), "0")
	}
	for name, v := range map[string]*string{"Origin": in.Origin, "Referer": in.Referer, "User-Agent": in.UserAgent} {
		if v != nil {
			cl.Header.Set(name, *v)
		}
	}
	k, err := s.store.GetAPIKey(ctx, principalFrom(ctx).AccountID, req.KeyId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(http.StatusNotFound, keyNotFound)
	}
	if err != nil {
		return nil, err
	}
	e, err := s.access.Dataset(ctx, in.DatasetId)
	if err != nil {
		return nil, err
	}
	refusal := tileaccess.RefuseNotFound
	if e.Found {
		creds := tileaccess.Credentials{Key: k.Token, HasKey: true}
		dec, err := s.access.Decide(ctx, e, &creds, cl, s.now())
		if err != nil {
			return nil, err
		}
		refusal = dec.Refusal
	}
	out := gen.CheckAPIKey200JSONResponse{Allowed: refusal == nil, Status: http.StatusOK, Reason: nullable.NewNullNullable[string]()}
	if refusal != nil {
		out.Status = gen.CheckResultStatus(refusal.Status)
		if refusal.Reason != "" {
			out.Reason = nullable.NewNullableWithValue(refusal.Reason)
		}
	}
	return out, nil
}

func (s *Server) ListAudit(ctx context.Context, req gen.ListAuditRequestObject) (gen.ListAuditResponseObject, error) {
	limit, cur, err := pageParams(req.Params.Limit, req.Params.Cursor)
	if err != nil {
		return nil, err
	}
	page, err := s.store.ListAudit(ctx, principalFrom(ctx).AccountID, cur, limit)
	if err != nil {
		return nil, err
	}
	out := gen.ListAudit200JSONResponse{TotalCount: int(page.Total), Items: make([]gen.AuditEvent, len(page.Items)), Cursor: nullable.NewNullNullable[string]()}
	for i, e := range page.Items {
		out.Items[i] = auditOut(e)
	}
	if page.Next != nil {
		out.Cursor = nullable.NewNullableWithValue(page.Next.Encode())
	}
	return out, nil
}

type auditActor = struct {
	Id   uuid.UUID `json:"id"`
	Name string    `json:"name"`
}

func auditOut(e store.AuditEvent) gen.AuditEvent {
	out := gen.AuditEvent{
		Id: e.ID, Time: e.At, Action: gen.AuditEventAction(e.Action),
		Actor:   nullable.NewNullNullable[auditActor](),
		Changes: map[string][]gen.AnyValue{},
	}
	out.Target.Type, out.Target.Id = gen.AuditEventTargetType(e.TargetType), e.TargetID
	if e.ActorID != nil {
		a := auditActor{Id: *e.ActorID}
		if e.ActorName != nil {
			a.Name = *e.ActorName
		}
		out.Actor = nullable.NewNullableWithValue(a)
	}
	// Written by the store from map[string][2]any: it always decodes.
	_ = json.Unmarshal(e.Changes, &out.Changes)
	return out
}

// auditPruner deletes audit events past the retention, now and then every interval.
type auditPruner struct {
	stop, done chan struct{}
}

func startAuditPruner(st *store.Store, retention, interval time.Duration, now func() time.Time, log *slog.Logger) *auditPruner {
	p := &auditPruner{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			n, err := st.PruneAudit(ctx, now().Add(-retention))
			cancel()
			switch {
			case err != nil:
				log.Warn("prune audit events", "err", err)
			case n > 0:
				log.Info("pruned audit events", "deleted", n, "retention", retention.String())
			}
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *auditPruner) close() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}
