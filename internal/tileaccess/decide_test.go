package tileaccess

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/store"
	"github.com/tilegate/tilegate/tiletoken"
)

// Decide's token and public rules, without a database (keys are covered through the server's
// tests, which run on both databases).
func TestDecideTokens(t *testing.T) {
	signer, err := tiletoken.New([]tiletoken.Key{{ID: "k1", Secret: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	a := &Access{signer: signer}
	c := &tileCache{}
	d := store.Dataset{ID: uuid.New(), AccountID: uuid.New(), AccessVersion: 3, Visibility: store.Private}
	priv := c.entry(store.TileSource{Dataset: d})
	pubD := d
	pubD.Visibility = store.Public
	pub := c.entry(store.TileSource{Dataset: pubD})
	other := d
	other.ID = uuid.New()
	otherE := c.entry(store.TileSource{Dataset: other})

	exp, _ := signer.Expiry()
	valid := Credentials{Scope: priv.scope, Sig: signer.SignAt(priv.scope, exp), Exp: strconv.FormatInt(exp, 10),
		HasScope: true, HasSig: true, HasExp: true}
	stale := valid
	stale.Scope = tiletoken.Scope(d.AccountID.String(), d.ID.String(), 2)
	stale.Sig = signer.SignAt(stale.Scope, exp)
	badSig := valid
	badSig.Sig = signer.SignAt(otherE.scope, exp)
	expired := valid
	expired.Exp = strconv.FormatInt(exp-3600, 10)
	expired.Sig = signer.SignAt(priv.scope, exp-3600)
	noSig := valid
	noSig.Sig, noSig.HasSig = "", false

	cases := []struct {
		name  string
		d     *DatasetEntry
		creds Credentials
		want  *Refusal
	}{
		{"public, nothing", pub, Credentials{}, nil},
		{"public, garbage token", pub, noSig, nil},
		{"private, nothing", priv, Credentials{}, RefuseMissing},
		{"valid token", priv, valid, nil},
		{"token of another dataset", otherE, valid, RefuseNotFound},
		{"token before access changed", priv, stale, RefuseScope},
		{"bad signature", priv, badSig, RefuseBadSignature},
		{"expired", priv, expired, RefuseExpired},
		{"no sig", priv, noSig, RefuseMalformed},
		{"empty key", priv, Credentials{HasKey: true}, RefuseMalformed},
		{"token wins over a key", priv, func() Credentials { c := valid; c.Key, c.HasKey = "x", true; return c }(), nil},
	}
	for _, tc := range cases {
		dec, err := a.Decide(context.Background(), tc.d, &tc.creds, Client{}, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if dec.Refusal != tc.want {
			t.Errorf("%s: refusal %+v, want %+v", tc.name, dec.Refusal, tc.want)
		}
		if dec.KeyID != uuid.Nil {
			t.Errorf("%s: key id %v without a key", tc.name, dec.KeyID)
		}
	}
}

func TestQueryValue(t *testing.T) {
	for _, tc := range []struct {
		raw, name, want string
		ok              bool
	}{
		{"key=a&key=b", "key", "a", true},
		{"k%65y=a%2Bb", "key", "a+b", true},
		{"key=%zz&key=b", "key", "b", true},
		{"sig=", "sig", "", true},
		{"x=1", "key", "", false},
		{"", "key", "", false},
	} {
		got, ok := QueryValue(tc.raw, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("QueryValue(%q, %q) = %q, %v; want %q, %v", tc.raw, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
