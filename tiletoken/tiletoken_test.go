package tiletoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// boundary is a multiple of 900 s (1_888_889 windows since the epoch).
	boundary = int64(1_700_000_100)

	accountID = "0b6f2a4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
	datasetID = "7d8e9f0a-1b2c-4d3e-9f40-5a6b7c8d9e0f"
)

func fixedKey(id string, fill byte) Key {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = fill + byte(i)
	}
	return Key{ID: id, Secret: secret}
}

var (
	keyA = fixedKey("a", 0x00)
	keyB = fixedKey("b", 0x40)
	keyC = fixedKey("c", 0x80)
)

func clockAt(unix int64) func() time.Time {
	return func() time.Time { return time.Unix(unix, 0) }
}

func mustNew(t testing.TB, keys []Key, now int64) *Signer {
	t.Helper()
	s, err := New(keys, WithClock(clockAt(now)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// referenceSig is GeoLens's formula written out independently of the package.
func referenceSig(secret []byte, scope string, exp int64) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(scope + ":" + strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

func TestKnownAnswer(t *testing.T) {
	scope := Scope(accountID, datasetID, 3)
	if want := accountID + ":" + datasetID + ":3"; scope != want {
		t.Fatalf("Scope = %q, want %q", scope, want)
	}
	const exp = int64(1700001000)
	// Vector computed outside Go (Python hmac/hashlib) so the test does not
	// merely compare the package against the same library it uses.
	const want = "c706844cc0cd813daee7fdbd8b68c00622ffa9a5bee4431b854c6fba6b81996d"
	if got := referenceSig(keyA.Secret, scope, exp); got != want {
		t.Fatalf("reference implementation = %s, want %s", got, want)
	}
	s := mustNew(t, []Key{keyA, keyB}, boundary)
	if got := s.SignAt(scope, exp); got != want {
		t.Fatalf("SignAt = %s, want %s", got, want)
	}
}

func TestScopeLowercases(t *testing.T) {
	got := Scope(strings.ToUpper(accountID), strings.ToUpper(datasetID), -7)
	if want := accountID + ":" + datasetID + ":-7"; got != want {
		t.Fatalf("Scope = %q, want %q", got, want)
	}
}

func TestExpiryWindows(t *testing.T) {
	tests := []struct {
		offset        int64
		wantExp       int64
		wantExpiresIn int
	}{
		{0, boundary + 900, 900},
		{1, boundary + 900, 899},
		{839, boundary + 900, 61},
		{840, boundary + 1800, 960}, // exactly 60 s left: skip to the next-next boundary
		{841, boundary + 1800, 959},
		{899, boundary + 1800, 901},
		{900, boundary + 1800, 900},
	}
	for _, tt := range tests {
		t.Run("+"+strconv.FormatInt(tt.offset, 10), func(t *testing.T) {
			s := mustNew(t, []Key{keyA}, boundary+tt.offset)
			exp, in := s.Expiry()
			if exp != tt.wantExp || in != tt.wantExpiresIn {
				t.Fatalf("Expiry() = (%d, %d), want (%d, %d)", exp, in, tt.wantExp, tt.wantExpiresIn)
			}
			tok := s.Sign("scope")
			if tok.Exp != tt.wantExp || tok.ExpiresIn != tt.wantExpiresIn || tok.Scope != "scope" {
				t.Fatalf("Sign() = %+v", tok)
			}
		})
	}
}

func TestExpiryBounds(t *testing.T) {
	for off := int64(-1); off <= 1801; off++ {
		exp, in := expiryAt(boundary+off, 900, 60)
		if in <= 60 || in > 960 {
			t.Fatalf("now=boundary%+d: expires_in=%d, want (60, 960]", off, in)
		}
		if exp%900 != 0 || exp-int64(in) != boundary+off {
			t.Fatalf("now=boundary%+d: exp=%d expires_in=%d inconsistent", off, exp, in)
		}
	}
	// Sub-second clocks truncate to the second, like the unix exp itself.
	s, _ := New([]Key{keyA}, WithClock(func() time.Time {
		return time.Unix(boundary+839, 999_999_999)
	}))
	if exp, _ := s.Expiry(); exp != boundary+900 {
		t.Fatalf("exp = %d, want %d", exp, boundary+900)
	}
}

func TestSignStableWithinWindow(t *testing.T) {
	scope := Scope(accountID, datasetID, 1)
	// Everything minted in [boundary-60, boundary+840) shares exp boundary+900.
	first := mustNew(t, []Key{keyA}, boundary-60).Sign(scope)
	for _, off := range []int64{-60, 0, 1, 450, 839} {
		tok := mustNew(t, []Key{keyA}, boundary+off).Sign(scope)
		if tok.Sig != first.Sig || tok.Exp != first.Exp || tok.Scope != first.Scope {
			t.Fatalf("offset %d: token %+v differs from %+v", off, tok, first)
		}
	}
	s := mustNew(t, []Key{keyA}, boundary+123)
	if a, b := s.Sign(scope), s.Sign(scope); a != b {
		t.Fatalf("two Sign calls differ: %+v vs %+v", a, b)
	}
	if next := mustNew(t, []Key{keyA}, boundary+840).Sign(scope); next.Sig == first.Sig {
		t.Fatal("token did not change across the window switch")
	}
}

func TestSignMatchesReference(t *testing.T) {
	s := mustNew(t, []Key{keyB, keyA}, boundary+10)
	tok := s.Sign("acct:ds:9")
	if want := referenceSig(keyB.Secret, "acct:ds:9", tok.Exp); tok.Sig != want {
		t.Fatalf("Sig = %s, want %s (first key signs)", tok.Sig, want)
	}
}

func TestVerify(t *testing.T) {
	now := boundary + 100
	scope := Scope(accountID, datasetID, 2)
	exp, _ := expiryAt(now, 900, 60)
	expS := strconv.FormatInt(exp, 10)
	sigA := referenceSig(keyA.Secret, scope, exp)
	sigB := referenceSig(keyB.Secret, scope, exp)
	sigC := referenceSig(keyC.Secret, scope, exp)
	staleScope := Scope(accountID, datasetID, 1)
	staleSig := referenceSig(keyA.Secret, staleScope, exp)
	flip := func(s string) string { // change the last hex digit
		last := s[len(s)-1]
		if last == '0' {
			return s[:len(s)-1] + "1"
		}
		return s[:len(s)-1] + "0"
	}
	at := func(e int64) (string, string) {
		return strconv.FormatInt(e, 10), referenceSig(keyA.Secret, scope, e)
	}
	pastExp, pastSig := at(now - 1)
	nowExp, nowSig := at(now)                 // exp == now: expired
	edgeExp, edgeSig := at(now + 1)           // one second left: valid
	maxExp, maxSig := at(now + 900 + 60 + 30) // the skew limit itself: valid
	farExp, farSig := at(now + 900 + 60 + 31)

	tests := []struct {
		name                 string
		expected, scope, sig string
		exp                  string
		want                 error
	}{
		{"valid", scope, scope, sigA, expS, nil},
		{"previous key still verifies", scope, scope, sigB, expS, nil},
		{"unknown key", scope, scope, sigC, expS, ErrBadSignature},
		{"tampered sig", scope, scope, flip(sigA), expS, ErrBadSignature},
		{"tampered exp", scope, scope, sigA, strconv.FormatInt(exp-1, 10), ErrBadSignature},
		{"wrong scope", scope, Scope(accountID, "11111111-2222-4333-8444-555555555555", 2), sigA, expS, ErrScope},
		{"wrong account", scope, Scope("99999999-2222-4333-8444-555555555555", datasetID, 2), sigA, expS, ErrScope},
		{"stale access_version", scope, staleScope, staleSig, expS, ErrScope},
		{"expired", scope, scope, pastSig, pastExp, ErrExpired},
		{"exactly at exp", scope, scope, nowSig, nowExp, ErrExpired},
		{"one second left", scope, scope, edgeSig, edgeExp, nil},
		{"at future limit", scope, scope, maxSig, maxExp, nil},
		{"far future", scope, scope, farSig, farExp, ErrExpired},
		{"huge exp", scope, scope, sigA, "9223372036854775807", ErrExpired},

		{"empty everything", scope, "", "", "", ErrMalformed},
		{"empty scope", scope, "", sigA, expS, ErrMalformed},
		{"empty sig", scope, scope, "", expS, ErrMalformed},
		{"empty exp", scope, scope, sigA, "", ErrMalformed},
		{"short sig", scope, scope, sigA[:63], expS, ErrMalformed},
		{"long sig", scope, scope, sigA + "0", expS, ErrMalformed},
		{"non-hex sig", scope, scope, "g" + sigA[1:], expS, ErrMalformed},
		{"uppercase sig", scope, scope, strings.ToUpper(sigA), expS, ErrMalformed},
		{"non-numeric exp", scope, scope, sigA, "soon", ErrMalformed},
		{"signed exp", scope, scope, sigA, "+" + expS, ErrMalformed},
		{"negative exp", scope, scope, sigA, "-" + expS, ErrMalformed},
		{"leading zero exp", scope, scope, sigA, "0" + expS, ErrMalformed},
		{"fractional exp", scope, scope, sigA, expS + ".0", ErrMalformed},
		{"overflowing exp", scope, scope, sigA, "9223372036854775808", ErrMalformed},
		// Malformed wins over scope: the request is rejected for the cheaper reason.
		{"malformed and wrong scope", scope, "x:y:1", "zz", expS, ErrMalformed},
	}
	s := mustNew(t, []Key{keyA, keyB}, now)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Verify(tt.expected, tt.scope, tt.sig, tt.exp)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyRoundTripAcrossWindow(t *testing.T) {
	scope := Scope(accountID, datasetID, 5)
	tok := mustNew(t, []Key{keyA}, boundary+899).Sign(scope) // exp = boundary+1800
	exp := strconv.FormatInt(tok.Exp, 10)
	for _, off := range []int64{899, 900, 1799} {
		if err := mustNew(t, []Key{keyA}, boundary+off).Verify(scope, tok.Scope, tok.Sig, exp); err != nil {
			t.Fatalf("at +%d: %v", off, err)
		}
	}
	if err := mustNew(t, []Key{keyA}, boundary+1800).Verify(scope, tok.Scope, tok.Sig, exp); !errors.Is(err, ErrExpired) {
		t.Fatalf("at +1800: %v, want ErrExpired", err)
	}
	// After rotation ([new, old]) the old token still verifies; once the old
	// key is dropped it does not.
	if err := mustNew(t, []Key{keyC, keyA}, boundary+1000).Verify(scope, tok.Scope, tok.Sig, exp); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := mustNew(t, []Key{keyC}, boundary+1000).Verify(scope, tok.Scope, tok.Sig, exp); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("after dropping old key: %v, want ErrBadSignature", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	s := mustNew(t, []Key{keyA, keyB}, boundary)
	scope := Scope(accountID, datasetID, 1)
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			var err error
			for i := 0; i < 500 && err == nil; i++ {
				tok := s.Sign(scope)
				err = s.Verify(scope, tok.Scope, tok.Sig, strconv.FormatInt(tok.Exp, 10))
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	if _, err := New([]Key{{ID: "a", Secret: make([]byte, 31)}}); err == nil {
		t.Fatal("New accepted a 31-byte secret")
	}
	if _, err := New([]Key{keyA, keyA}); err == nil {
		t.Fatal("New accepted duplicate ids")
	}
	// The Signer must not alias the caller's secret.
	k := fixedKey("a", 0)
	s := mustNew(t, []Key{k}, boundary)
	before := s.SignAt("x", 900)
	k.Secret[0] ^= 0xff
	if s.SignAt("x", 900) != before {
		t.Fatal("Signer aliases the caller's secret slice")
	}
}

func TestParseEncodeKeysRoundTrip(t *testing.T) {
	gen, err := GenerateKey("k2024-06_b")
	if err != nil {
		t.Fatal(err)
	}
	if len(gen.Secret) != 32 {
		t.Fatalf("generated secret is %d bytes", len(gen.Secret))
	}
	// Configured keys must look random (ParseKeys refuses keyA's counting sequence): generated.
	ka, kb := mustGenerate(t, "a"), mustGenerate(t, "b")
	keys := []Key{gen, ka, kb}
	enc := EncodeKeys(keys)
	if strings.ToLower(enc) != enc {
		t.Fatalf("EncodeKeys not lowercase: %s", enc)
	}
	got, err := ParseKeys(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("got %d keys, want %d", len(got), len(keys))
	}
	for i := range keys {
		if got[i].ID != keys[i].ID || !hmac.Equal(got[i].Secret, keys[i].Secret) {
			t.Fatalf("key %d: got %+v, want %+v", i, got[i], keys[i])
		}
	}
	if EncodeKeys(got) != enc {
		t.Fatal("EncodeKeys(ParseKeys(s)) != s")
	}

	// Whitespace and uppercase hex are tolerated on input.
	loose := " a:" + strings.ToUpper(hex.EncodeToString(ka.Secret)) + " , b:" + hex.EncodeToString(kb.Secret) + "\n"
	got, err = ParseKeys(loose)
	if err != nil || len(got) != 2 || got[0].ID != "a" || !hmac.Equal(got[0].Secret, ka.Secret) {
		t.Fatalf("ParseKeys(loose) = %+v, %v", got, err)
	}

	g1, _ := GenerateKey("x")
	g2, _ := GenerateKey("x")
	if hmac.Equal(g1.Secret, g2.Secret) {
		t.Fatal("GenerateKey returned the same secret twice")
	}
}

func TestParseKeysErrors(t *testing.T) {
	hexA := hex.EncodeToString(keyA.Secret)
	hexB := hex.EncodeToString(keyB.Secret)
	tests := map[string]string{
		"empty":            "",
		"blank":            "   ",
		"no colon":         hexA,
		"empty id":         ":" + hexA,
		"bad id char":      "a.b:" + hexA,
		"id with space":    "a b:" + hexA,
		"empty secret":     "a:",
		"odd-length hex":   "a:" + hexA[:63],
		"non-hex secret":   "a:" + strings.Repeat("zz", 32),
		"short secret":     "a:" + hexA[:62],
		"duplicate id":     "a:" + hexA + ",a:" + hexB,
		"trailing comma":   "a:" + hexA + ",",
		"empty middle":     "a:" + hexA + ",,b:" + hexB,
		"extra colon":      "a:" + hexA + ":x",
		"second key short": "a:" + hexA + ",b:abcd",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseKeys(in)
			if err == nil {
				t.Fatalf("ParseKeys(%q) = %+v, want error", in, keys)
			}
			if strings.Contains(err.Error(), hexA) || strings.Contains(err.Error(), hexB) {
				t.Fatalf("error leaks secret: %v", err)
			}
		})
	}
	if _, err := GenerateKey(""); err == nil {
		t.Fatal("GenerateKey accepted an empty id")
	}
	if _, err := GenerateKey("a:b"); err == nil {
		t.Fatal("GenerateKey accepted an id with ':'")
	}
}

func TestVerifyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	s := mustNew(t, []Key{keyA, keyB}, boundary)
	scope := Scope(accountID, datasetID, 1)
	tok := s.Sign(scope)
	exp := strconv.FormatInt(tok.Exp, 10)
	sigB := referenceSig(keyB.Secret, scope, tok.Exp)
	allocs := testing.AllocsPerRun(100, func() {
		if s.Verify(scope, scope, tok.Sig, exp) != nil || s.Verify(scope, scope, sigB, exp) != nil {
			t.Fatal("verify failed")
		}
		_ = s.Verify(scope, scope, "bad", exp)
	})
	if allocs != 0 {
		t.Fatalf("Verify allocates %.1f times per run", allocs)
	}
}

// benchFixture returns a signer with [current, previous] keys and a token
// from each.
func benchFixture(b *testing.B) (s *Signer, scope, exp, sigCurrent, sigPrevious string) {
	s = mustNew(b, []Key{keyA, keyB}, boundary+100)
	scope = Scope(accountID, datasetID, 42)
	tok := s.Sign(scope)
	return s, scope, strconv.FormatInt(tok.Exp, 10), tok.Sig, referenceSig(keyB.Secret, scope, tok.Exp)
}

func BenchmarkSign(b *testing.B) {
	s, scope, _, _, _ := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Sign(scope)
	}
}

func BenchmarkVerify(b *testing.B) {
	s, scope, exp, sig, _ := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify(scope, scope, sig, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPreviousKey(b *testing.B) {
	s, scope, exp, _, sig := benchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify(scope, scope, sig, exp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	s, scope, exp, sig, _ := benchFixture(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Verify(scope, scope, sig, exp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMACStrategies justifies the sync.Pool in signingKey: "pool" is
// what the package does, "hmacNew" keys a fresh HMAC for every message.
func BenchmarkMACStrategies(b *testing.B) {
	scope := Scope(accountID, datasetID, 42)
	exp := "1700001000"
	b.Run("pool", func(b *testing.B) {
		k := newSigningKey(keyA)
		b.ReportAllocs()
		for b.Loop() {
			_ = sum(k, scope, exp)
		}
	})
	b.Run("hmacNew", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		var sum [sha256.Size]byte
		for b.Loop() {
			h := hmac.New(sha256.New, keyA.Secret)
			buf = append(append(append(buf[:0], scope...), ':'), exp...)
			h.Write(buf)
			h.Sum(sum[:0])
		}
	})
}

func TestWindowConfigured(t *testing.T) {
	at := func(now int64, window time.Duration) *Signer {
		t.Helper()
		s, err := New([]Key{keyA}, WithClock(func() time.Time { return time.Unix(now, 0) }), WithWindow(window))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The minimum remaining scales with the window: 60 s of 900, 1 s of 10, 20 s of 300.
	for _, tc := range []struct {
		window       time.Duration
		minRem, maxN int64
	}{{10 * time.Second, 1, 11}, {300 * time.Second, 20, 320}, {Window, 60, 960}, {time.Hour, 240, 3840}} {
		w := int64(tc.window / time.Second)
		for off := int64(-1); off <= 2*w+1; off++ {
			s := at(boundary+off, tc.window)
			exp, in := s.Expiry()
			if int64(in) <= tc.minRem || int64(in) > tc.maxN || exp%w != 0 || exp-int64(in) != boundary+off {
				t.Fatalf("window %s, now=boundary%+d: exp=%d expires_in=%d, want a multiple of %d in (%d, %d]",
					tc.window, off, exp, in, w, tc.minRem, tc.maxN)
			}
		}
		if s := at(boundary, tc.window); s.Window() != tc.window {
			t.Errorf("Window() = %s, want %s", s.Window(), tc.window)
		}
	}
	// 10 s window: 1 s left is too little, the token reaches to the boundary after.
	if exp, in := at(boundary+9, 10*time.Second).Expiry(); exp != boundary+20 || in != 11 {
		t.Errorf("10 s window, 1 s before a boundary: exp %d expires_in %d", exp-boundary, in)
	}
	for _, bad := range []time.Duration{9 * time.Second, -time.Second, 25 * time.Hour, 10500 * time.Millisecond} {
		if _, err := New([]Key{keyA}, WithWindow(bad)); !errors.Is(err, ErrWindow) {
			t.Errorf("window %s: %v, want ErrWindow", bad, err)
		}
	}
	if s, err := New([]Key{keyA}, WithWindow(0)); err != nil || s.Window() != Window {
		t.Errorf("window 0 keeps the default: %v %v", s, err)
	}
}

// Replicas whose windows differ (one of them the default) accept each other's tokens until exp.
func TestWindowAcrossReplicas(t *testing.T) {
	scope := Scope(accountID, datasetID, 1)
	signer := func(now int64, window time.Duration) *Signer {
		s, err := New([]Key{keyA}, WithClock(func() time.Time { return time.Unix(now, 0) }), WithWindow(window))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := boundary + 899 // the default window's longest token: 901 s
	long := signer(now, Window).Sign(scope)
	short := signer(now, 10*time.Second).Sign(scope)
	if long.ExpiresIn != 901 || short.ExpiresIn != 11 {
		t.Fatalf("expires_in %d and %d", long.ExpiresIn, short.ExpiresIn)
	}
	for _, verifier := range []time.Duration{10 * time.Second, Window} {
		for name, tok := range map[string]Token{"900 s": long, "10 s": short} {
			if err := signer(now, verifier).Verify(scope, tok.Scope, tok.Sig, strconv.FormatInt(tok.Exp, 10)); err != nil {
				t.Errorf("a %s token on a replica with window %s: %v", name, verifier, err)
			}
			if err := signer(tok.Exp, verifier).Verify(scope, tok.Scope, tok.Sig, strconv.FormatInt(tok.Exp, 10)); !errors.Is(err, ErrExpired) {
				t.Errorf("a %s token at its exp on a replica with window %s: %v, want ErrExpired", name, verifier, err)
			}
		}
	}
	// The 10 s replica's future limit is the default window's longest lifetime plus the skew.
	edge := now + 960 + 30
	for exp, want := range map[int64]error{edge: nil, edge + 1: ErrExpired} {
		err := signer(now, 10*time.Second).Verify(scope, scope, referenceSig(keyA.Secret, scope, exp), strconv.FormatInt(exp, 10))
		if !errors.Is(err, want) && (want != nil || err != nil) {
			t.Errorf("exp now+%d on the 10 s replica: %v, want %v", exp-now, err, want)
		}
	}
}
