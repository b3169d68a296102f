package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Channels of the changes caches must hear of; on PostgreSQL they are also NOTIFY channels.
const (
	// KeyChannel carries the id of a changed, rotated or deleted API key (caches hold a key
	// under each of its tokens, which the id reaches).
	KeyChannel = "tilegate_api_keys"
	// DatasetChannel carries the id of a dataset whose access, metadata or tiles changed.
	DatasetChannel = "tilegate_datasets"
)

// Change is a committed change to an API key or a dataset.
type Change struct {
	Channel string
	Payload string
}

func keyChange(id uuid.UUID) Change     { return Change{KeyChannel, id.String()} }
func datasetChange(id uuid.UUID) Change { return Change{DatasetChannel, id.String()} }

// subscribers hear of this process's changes once they are committed.
type subscribers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(Change)
}

// Subscribe calls fn after every committed change this process makes (other replicas' changes
// arrive through PostgreSQL's LISTEN). It returns the function that unsubscribes.
func (s *Store) Subscribe(fn func(Change)) (unsubscribe func()) {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if s.subs.fns == nil {
		s.subs.fns = map[int]func(Change){}
	}
	id := s.subs.next
	s.subs.next++
	s.subs.fns[id] = fn
	return func() {
		s.subs.mu.Lock()
		defer s.subs.mu.Unlock()
		delete(s.subs.fns, id)
	}
}

// changing runs fn in a transaction that changes what caches hold; fn announces the change.
// On PostgreSQL the announcement is a NOTIFY inside the transaction, delivered to every replica
// on commit; after the commit this process's subscribers hear it directly (on SQLite that is all
// there is). Announcing after commit keeps a concurrent cache load from storing the old row.
func (s *Store) changing(ctx context.Context, fn func(tx *gorm.DB, announce func(Change) error) error) error {
	var changes []Change
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		changes = changes[:0]
		return fn(tx, func(c Change) error {
			changes = append(changes, c)
			if s.dialect != Postgres {
				return nil
			}
			if err := tx.Exec("SELECT pg_notify(?, ?)", c.Channel, c.Payload).Error; err != nil {
				return fmt.Errorf("notify %s: %w", c.Channel, err)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.subs.mu.Lock()
	fns := make([]func(Change), 0, len(s.subs.fns))
	for _, fn := range s.subs.fns {
		fns = append(fns, fn)
	}
	s.subs.mu.Unlock()
	for _, c := range changes {
		for _, fn := range fns {
			fn(c)
		}
	}
	return nil
}
