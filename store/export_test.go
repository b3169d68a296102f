package store

import (
	"context"
	"fmt"
)

// SetNameSource makes generated key names come from next until the returned restore runs.
func SetNameSource(next func() (string, error)) (restore func()) {
	prev := generateName
	generateName = next
	return func() { generateName = prev }
}

// MigrateTo applies the migrations up to version and no further (a database as an older
// tilegate left it).
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, err := s.migrations()
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("migrate to %d: %w", version, err)
	}
	return nil
}
