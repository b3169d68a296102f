// Package tiletoken mints and verifies short-lived signed tile tokens that
// are byte-compatible with GeoLens:
//
//	scope = "<account_id>:<dataset_id>:<access_version>"
//	sig   = lowercase hex(HMAC-SHA256(K, scope + ":" + exp))
//
// exp is a unix time in seconds aligned to a window (900 s by default), so every token
// minted for a scope within the same window is byte-identical and tile URLs
// stay cacheable by browsers and CDNs. Bumping a dataset's access_version
// changes the scope and thereby revokes all outstanding tokens for it.
package tiletoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// Window is the default token alignment period (TILEGATE_TOKEN_WINDOW): exp is always a
	// multiple of the window in force.
	Window = 900 * time.Second
	// MinWindow and MaxWindow bound a configured window. Below 10 s a map would refresh its
	// tokens more often than it loads tiles; above a day a token is no longer short-lived.
	MinWindow = 10 * time.Second
	MaxWindow = 24 * time.Hour
	// MinRemaining is the least lifetime a freshly minted token gets with the default window;
	// other windows scale it (window/15, rounded up to a second). When the next boundary is this
	// close or closer, exp moves one window further so clients never receive a token about to
	// expire mid-page-load.
	MinRemaining = 60 * time.Second
	// ClockSkew is the extra future slack Verify tolerates on top of the longest lifetime a
	// signer can produce. It covers another tilegate replica whose clock runs slightly ahead;
	// 30 s is well above NTP-synchronised drift yet keeps the bound tight.
	ClockSkew = 30 * time.Second

	sigHexLen = 2 * sha256.Size
)

// ErrWindow is returned by New for a window outside [MinWindow, MaxWindow] or not whole seconds.
var ErrWindow = errors.New("tiletoken: token window must be whole seconds between 10s and 24h")

// Errors returned by Verify. They are sentinels so handlers can map them to
// responses with errors.Is; Verify may wrap them with detail.
var (
	ErrMalformed    = errors.New("tiletoken: malformed token")
	ErrExpired      = errors.New("tiletoken: token expired")
	ErrScope        = errors.New("tiletoken: token scope mismatch")
	ErrBadSignature = errors.New("tiletoken: bad token signature")
)

// Detailed errors are built once so the Verify hot path never allocates,
// not even on rejection (rejections can be attacker-driven floods).
var (
	errEmptyScope = fmt.Errorf("%w: empty scope", ErrMalformed)
	errBadSig     = fmt.Errorf("%w: sig must be %d lowercase hex characters", ErrMalformed, sigHexLen)
	errBadExp     = fmt.Errorf("%w: exp must be a canonical unix timestamp", ErrMalformed)
	errTooFar     = fmt.Errorf("%w: exp too far in the future", ErrExpired)
)

// Scope builds "<account>:<dataset>:<version>". The ids are lowercased
// because GeoLens signs canonical lower-case UUIDs; strings.ToLower returns
// its argument unchanged (no allocation) when it is already lower-case.
func Scope(accountID, datasetID string, accessVersion int64) string {
	accountID = strings.ToLower(accountID)
	datasetID = strings.ToLower(datasetID)
	var b strings.Builder
	b.Grow(len(accountID) + len(datasetID) + 2 + 20)
	b.WriteString(accountID)
	b.WriteByte(':')
	b.WriteString(datasetID)
	b.WriteByte(':')
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], accessVersion, 10))
	return b.String()
}

// Token is a minted token as handed to clients.
type Token struct {
	Scope     string
	Sig       string
	Exp       int64
	ExpiresIn int
}

// Signer mints and verifies tokens. It is safe for concurrent use.
type Signer struct {
	keys   []*signingKey // keys[0] signs; all verify
	now    func() time.Time
	window time.Duration
	// windowSecs and minRemSecs place exp (expiryAt); maxAheadSecs is Verify's future limit.
	windowSecs, minRemSecs, maxAheadSecs int64
}

// Option configures a Signer.
type Option func(*Signer)

// WithClock replaces time.Now, so tests can place "now" exactly on window
// boundaries. A nil function is ignored.
func WithClock(now func() time.Time) Option {
	return func(s *Signer) {
		if now != nil {
			s.now = now
		}
	}
}

// WithWindow sets the token window (TILEGATE_TOKEN_WINDOW; default Window). New refuses one
// outside [MinWindow, MaxWindow]; zero keeps the default.
func WithWindow(d time.Duration) Option {
	return func(s *Signer) {
		if d != 0 {
			s.window = d
		}
	}
}

// New returns a Signer whose first key signs and whose keys all verify. It
// fails when keys is empty or violates the rules ParseKeys enforces, or when
// the window is out of range.
func New(keys []Key, opts ...Option) (*Signer, error) {
	if err := validateKeys(keys); err != nil {
		return nil, err
	}
	s := &Signer{now: time.Now, window: Window, keys: make([]*signingKey, len(keys))}
	for i, k := range keys {
		s.keys[i] = newSigningKey(k)
	}
	for _, opt := range opts {
		opt(s)
	}
	if s.window < MinWindow || s.window > MaxWindow || s.window%time.Second != 0 {
		return nil, fmt.Errorf("%w (got %s)", ErrWindow, s.window)
	}
	s.windowSecs = int64(s.window / time.Second)
	s.minRemSecs = minRemaining(s.windowSecs)
	// A replica configured with another window may have minted the token: accept the longest
	// lifetime of this window and the default one, so replicas whose windows differ (one of
	// them the default, as while a setting rolls out) accept each other's tokens.
	longest := max(s.windowSecs, int64(Window/time.Second))
	s.maxAheadSecs = longest + minRemaining(longest) + int64(ClockSkew/time.Second)
	return s, nil
}

// minRemaining is MinRemaining scaled to a window of w seconds: w/15, rounded up.
func minRemaining(w int64) int64 {
	return (w*int64(MinRemaining/time.Second) + int64(Window/time.Second) - 1) / int64(Window/time.Second)
}

// Window is the token window in force.
func (s *Signer) Window() time.Duration { return s.window }

// Expiry returns exp and expires_in for the current time. It is exposed so a
// batch of tokens can be signed with one consistent exp via SignAt, even if
// the batch straddles a window boundary.
func (s *Signer) Expiry() (exp int64, expiresIn int) {
	return expiryAt(s.now().Unix(), s.windowSecs, s.minRemSecs)
}

// expiryAt places exp on the next window boundary strictly after now, or on
// the one after that when minRem or less is left (so expires_in is always in
// (minRem, window+minRem]: (60, 960] with the default window).
func expiryAt(now, window, minRem int64) (exp int64, expiresIn int) {
	// Floor modulo so the arithmetic is right for pre-1970 clocks too.
	rem := now % window
	if rem < 0 {
		rem += window
	}
	exp = now - rem + window
	if exp-now <= minRem {
		exp += window
	}
	return exp, int(exp - now)
}

// Sign mints a token for scope using the current key and window.
func (s *Signer) Sign(scope string) Token {
	exp, expiresIn := s.Expiry()
	return Token{Scope: scope, Sig: s.SignAt(scope, exp), Exp: exp, ExpiresIn: expiresIn}
}

// SignAt returns the lowercase hex signature of scope for the given exp,
// using the current (first) key.
func (s *Signer) SignAt(scope string, exp int64) string {
	var num [20]byte
	mac := sum(s.keys[0], scope, strconv.AppendInt(num[:0], exp, 10))
	var out [sigHexLen]byte
	const digits = "0123456789abcdef"
	for i, b := range mac {
		out[2*i] = digits[b>>4]
		out[2*i+1] = digits[b&0x0f]
	}
	return string(out[:])
}

// Verify checks a client's token against expectedScope, which the server must
// derive from the stored dataset (never from the request), and returns nil or
// an error matching ErrMalformed, ErrScope, ErrExpired or ErrBadSignature.
//
// Checks run cheapest first, and the HMAC runs last so that garbage, scope
// probes and stale tokens cost no hashing:
//
//  1. malformed: empty scope; sig not exactly 64 lowercase hex characters
//     (GeoLens only emits lowercase, and one spelling per token keeps URLs
//     canonical for caches); exp not a canonical non-negative decimal (no
//     sign, no leading zeros), because the signature covers exp's text and a
//     re-spelled exp could never verify anyway.
//  2. scope: scope != expectedScope. This covers a different account or
//     dataset and a stale access_version (revocation). Scopes are not secret,
//     so a plain comparison is fine.
//  3. expired: exp <= now, or exp beyond the longest lifetime (of this
//     signer's window or the default one, whichever is longer) plus ClockSkew. The
//     latter is reported as ErrExpired wrapped with "too far in the future":
//     such a token cannot come from a correct signer, and to the client the
//     remedy is the same (fetch a new token).
//  4. signature: compared in constant time (hmac.Equal) against each key in
//     order, stopping at the first match. Stopping early reveals only which
//     configured key signed a valid token, which is not secret, and keeps
//     current-key tokens at one HMAC.
func (s *Signer) Verify(expectedScope, scope, sig, exp string) error {
	if scope == "" {
		return errEmptyScope
	}
	var got [sha256.Size]byte
	if !decodeLowerHex(&got, sig) {
		return errBadSig
	}
	expV, ok := parseExp(exp)
	if !ok {
		return errBadExp
	}
	if scope != expectedScope {
		return ErrScope
	}
	now := s.now().Unix()
	if expV <= now {
		return ErrExpired
	}
	if expV > now+s.maxAheadSecs {
		return errTooFar
	}
	// exp is canonical, so the client's text is exactly what SignAt would
	// have hashed; hash it as is instead of re-formatting the number.
	for _, k := range s.keys {
		want := sum(k, scope, exp)
		if hmac.Equal(want[:], got[:]) {
			return nil
		}
	}
	return ErrBadSignature
}

// parseExp accepts 1-19 decimal digits without sign or leading zeros.
func parseExp(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64) // only fails on overflow here
	return v, err == nil
}

// decodeLowerHex decodes exactly 64 lowercase hex characters into dst.
func decodeLowerHex(dst *[sha256.Size]byte, s string) bool {
	if len(s) != sigHexLen {
		return false
	}
	var bad byte
	for i := range dst {
		hi, lo := lowerHexVal[s[2*i]], lowerHexVal[s[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0xf0 == 0
}

// lowerHexVal maps '0'-'9' and 'a'-'f' to their values and every other byte
// to 0xff; a table lookup with one deferred validity check beats branching
// per character in the Verify hot path.
var lowerHexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// signingKey holds a pool of keyed HMAC states. Keying HMAC-SHA256 costs two
// SHA-256 block compressions plus several allocations; a pooled state that
// has been Reset once restores the precomputed ipad/opad midstates instead
// (see crypto/hmac's marshaled fast path), roughly halving the cost of a
// short message. BenchmarkMACStrategies compares the two.
type signingKey struct {
	pool sync.Pool // of *macState
}

// macState bundles a keyed HMAC with scratch buffers. Keeping the buffers in
// the pooled object (rather than on the caller's stack) matters: slices passed
// to hash.Hash methods escape, so stack buffers would be heap-allocated on
// every call.
type macState struct {
	h   hash.Hash
	msg []byte
	sum [sha256.Size]byte
}

func newSigningKey(k Key) *signingKey {
	secret := append([]byte(nil), k.Secret...) // detach from the caller's slice
	sk := &signingKey{}
	sk.pool.New = func() any {
		h := hmac.New(sha256.New, secret)
		h.Reset() // switches crypto/hmac to its precomputed-midstate mode
		return &macState{h: h, msg: make([]byte, 0, 128)}
	}
	return sk
}

// sum returns HMAC(key, scope + ":" + exp). exp is generic so Sign can pass
// formatted digits and Verify the client's string without a conversion.
func sum[T string | []byte](k *signingKey, scope string, exp T) [sha256.Size]byte {
	st := k.pool.Get().(*macState)
	st.msg = append(append(append(st.msg[:0], scope...), ':'), exp...)
	out := st.finish()
	k.pool.Put(st)
	return out
}

func (st *macState) finish() [sha256.Size]byte {
	st.h.Reset()
	st.h.Write(st.msg)
	st.h.Sum(st.sum[:0])
	return st.sum
}
