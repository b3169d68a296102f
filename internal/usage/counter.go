// Package usage counts what the tile path serves and refuses, per API key, dataset and hour, in
// memory, and writes the counts in batches (one upsert statement per flush); it enforces the
// keys' rate limits (a token bucket per key, each replica taking its share) and monthly quotas,
// and deletes usage past its retention. Nothing here runs SQL on the tile path.
package usage

import (
	"sync"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
)

// Credential says what a counted request carried.
type Credential uint8

const (
	Key Credential = iota
	Token
	Public
)

func (c Credential) String() string {
	return [...]string{store.CredentialKey, store.CredentialToken, store.CredentialPublic}[c]
}

// cell names one counter: an hour, a key (uuid.Nil: none), a dataset, a credential, and a
// refusal reason (0 for served tiles; see reasons). No string in it: hashing stays a memhash.
type cell struct {
	hour    int64
	key     uuid.UUID
	dataset uuid.UUID
	cred    Credential
	reason  uint8
}

// reasons numbers the refusal reasons cells carry (0 is "": served); a reason is numbered when
// first counted. Refusals are few compared to tiles, and their reasons fewer still.
type reasons struct {
	mu    sync.RWMutex
	codes map[string]uint8
	names []string
}

func newReasons() *reasons { return &reasons{codes: map[string]uint8{"": 0}, names: []string{""}} }

// code returns reason's number; reasons past 255 share the last one ("other").
func (r *reasons) code(reason string) uint8 {
	r.mu.RLock()
	c, ok := r.codes[reason]
	r.mu.RUnlock()
	if ok {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.codes[reason]; ok {
		return c
	}
	if len(r.names) > 255 {
		return 255
	}
	c = uint8(len(r.names))
	r.codes[reason], r.names = c, append(r.names, reason)
	return c
}

func (r *reasons) name(c uint8) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.names[c]
}

type counts struct{ served, bytes, refused int64 }

// counter is the in-memory counts since the last flush, sharded so that concurrent tile requests
// rarely meet on a lock: a request locks one shard for a map update.
type counter struct {
	shards  [counterShards]shard
	reasons *reasons
}

const counterShards = 32

type shard struct {
	mu sync.Mutex
	m  map[cell]*counts
	_  [48]byte // keep shards' locks on separate cache lines
}

func newCounter() *counter {
	c := &counter{reasons: newReasons()}
	for i := range c.shards {
		c.shards[i].m = map[cell]*counts{}
	}
	return c
}

func (c *counter) shard(k *cell) *shard {
	return &c.shards[(int(k.key[15])^int(k.dataset[15])^int(k.hour/3600))%counterShards]
}

func (c *counter) add(k cell, served, bytes, refused int64) {
	s := c.shard(&k)
	s.mu.Lock()
	n := s.m[k]
	if n == nil {
		n = &counts{}
		s.m[k] = n
	}
	n.served += served
	n.bytes += bytes
	n.refused += refused
	s.mu.Unlock()
}

// take empties the counter and returns what it held as rows.
func (c *counter) take() []store.UsageRow {
	var rows []store.UsageRow
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		m := s.m
		if len(m) > 0 {
			s.m = make(map[cell]*counts, len(m))
		}
		s.mu.Unlock()
		for k, n := range m {
			rows = append(rows, store.UsageRow{Hour: k.hour, KeyID: k.key, DatasetID: k.dataset,
				Credential: k.cred.String(), Reason: c.reasons.name(k.reason), Served: n.served, Bytes: n.bytes, Refused: n.refused})
		}
	}
	return rows
}

// putBack adds rows that could not be written back into the counter, for the next flush.
func (c *counter) putBack(rows []store.UsageRow) {
	for _, r := range rows {
		c.add(cell{hour: r.Hour, key: r.KeyID, dataset: r.DatasetID, cred: credentialOf(r.Credential), reason: c.reasons.code(r.Reason)},
			r.Served, r.Bytes, r.Refused)
	}
}

func credentialOf(s string) Credential {
	switch s {
	case store.CredentialToken:
		return Token
	case store.CredentialPublic:
		return Public
	}
	return Key
}

// served sums key's served tiles of hours from since on that the counter holds.
func (c *counter) served(key uuid.UUID, since int64) int64 {
	var n int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, v := range s.m {
			if k.key == key && k.reason == 0 && k.hour >= since {
				n += v.served
			}
		}
		s.mu.Unlock()
	}
	return n
}
