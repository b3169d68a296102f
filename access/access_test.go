package access_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tilegate/tilegate/access"
)

func TestDatasetRules(t *testing.T) {
	owner, other := uuid.New(), uuid.New()
	admin := access.Caller{Account: owner, Principal: uuid.New(), Role: access.RoleAdmin}
	editor := access.Caller{Account: owner, Principal: uuid.New(), Role: "editor"}
	key := access.Caller{Account: owner}
	stranger := access.Caller{Account: other, Principal: uuid.New(), Role: access.RoleAdmin}
	ds := func(vis string, accountGrant, principalGrant bool) access.Dataset {
		return access.Dataset{Owner: owner, Visibility: vis, AccountGrant: accountGrant, PrincipalGrant: principalGrant}
	}
	for _, tc := range []struct {
		name          string
		c             access.Caller
		d             access.Dataset
		see, use, own error
		listed        bool
	}{
		{"admin private", admin, ds(access.Private, false, false), nil, nil, nil, true},
		{"admin restricted", admin, ds(access.Restricted, false, false), nil, nil, nil, true},
		{"editor restricted", editor, ds(access.Restricted, false, false), nil, access.ErrRestricted, nil, true},
		{"editor restricted granted", editor, ds(access.Restricted, false, true), nil, nil, nil, true},
		{"key restricted", key, ds(access.Restricted, false, false), nil, access.ErrRestricted, nil, true},
		{"stranger private", stranger, ds(access.Private, false, false), access.ErrNotVisible, access.ErrNotVisible, access.ErrNotVisible, false},
		{"stranger public", stranger, ds(access.Public, false, false), nil, nil, access.ErrNotOwner, false},
		{"partner shared", stranger, ds(access.Private, true, false), nil, nil, access.ErrNotOwner, true},
		{"partner shared restricted", stranger, ds(access.Restricted, true, false), nil, access.ErrRestricted, access.ErrNotOwner, true},
	} {
		if err := access.See(tc.c, tc.d); !errors.Is(err, tc.see) || (err == nil) != (tc.see == nil) {
			t.Errorf("%s: See = %v, want %v", tc.name, err, tc.see)
		}
		if err := access.Use(tc.c, tc.d); !errors.Is(err, tc.use) || (err == nil) != (tc.use == nil) {
			t.Errorf("%s: Use = %v, want %v", tc.name, err, tc.use)
		}
		if err := access.Own(tc.c, tc.d); !errors.Is(err, tc.own) || (err == nil) != (tc.own == nil) {
			t.Errorf("%s: Own = %v, want %v", tc.name, err, tc.own)
		}
		if got := access.Listed(tc.c, tc.d); got != tc.listed {
			t.Errorf("%s: Listed = %v, want %v", tc.name, got, tc.listed)
		}
	}
}

func TestKeyRules(t *testing.T) {
	acct := uuid.New()
	id, otherID := uuid.New(), uuid.New()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	mine := access.Dataset{Owner: acct, Visibility: access.Private}
	ip := netip.MustParseAddr("10.1.2.3")
	for _, tc := range []struct {
		name string
		k    access.Key
		id   uuid.UUID
		d    access.Dataset
		ip   netip.Addr
		want error
	}{
		{"plain", access.Key{Account: acct}, id, mine, ip, nil},
		{"disabled", access.Key{Account: acct, Disabled: true}, id, mine, ip, access.ErrKeyDisabled},
		{"expired now", access.Key{Account: acct, Expires: now}, id, mine, ip, access.ErrKeyExpired},
		{"expires later", access.Key{Account: acct, Expires: now.Add(time.Second)}, id, mine, ip, nil},
		{"previous token in grace", access.Key{Account: acct, TokenUntil: now.Add(time.Second)}, id, mine, ip, nil},
		{"previous token retired", access.Key{Account: acct, TokenUntil: now}, id, mine, ip, access.ErrKeyRetired},
		{"retired beats disabled", access.Key{Account: acct, TokenUntil: now, Disabled: true}, id, mine, ip, access.ErrKeyRetired},
		{"disabled beats not visible", access.Key{Account: acct, Disabled: true}, id, access.Dataset{Owner: uuid.New()}, ip, access.ErrKeyDisabled},
		{"not visible", access.Key{Account: acct}, id, access.Dataset{Owner: uuid.New(), Visibility: access.Private}, ip, access.ErrNotVisible},
		{"restricted", access.Key{Account: acct}, id, access.Dataset{Owner: acct, Visibility: access.Restricted}, ip, access.ErrRestricted},
		{"scope lists it", access.Key{Account: acct, Datasets: []uuid.UUID{otherID, id}}, id, mine, ip, nil},
		{"scope omits it", access.Key{Account: acct, Datasets: []uuid.UUID{otherID}}, id, mine, ip, access.ErrDatasetNotAllowed},
		{"empty scope", access.Key{Account: acct, Datasets: []uuid.UUID{}}, id, mine, ip, access.ErrDatasetNotAllowed},
		{"not visible beats scope", access.Key{Account: acct, Datasets: []uuid.UUID{}}, id, access.Dataset{Owner: uuid.New(), Visibility: access.Private}, ip, access.ErrNotVisible},
		{"ip in range", access.Key{Account: acct, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, id, mine, ip, nil},
		{"mapped ip in range", access.Key{Account: acct, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, id, mine, netip.MustParseAddr("::ffff:10.1.2.3"), nil},
		{"ip outside", access.Key{Account: acct, IPRanges: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}, id, mine, ip, access.ErrIPNotAllowed},
		{"no ip", access.Key{Account: acct, IPRanges: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, id, mine, netip.Addr{}, access.ErrIPNotAllowed},
		{"empty ranges", access.Key{Account: acct, IPRanges: []netip.Prefix{}}, id, mine, ip, access.ErrIPNotAllowed},
	} {
		err := access.UseKey(&tc.k, tc.id, tc.d, tc.ip, now)
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: UseKey = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// BenchmarkUseKey is the cost of a key's rules on the tile path: none beyond its account, and
// every rule (10 datasets and 10 IP ranges, the matching ones last, and an expiry).
func BenchmarkUseKey(b *testing.B) {
	acct, id := uuid.New(), uuid.New()
	d := access.Dataset{Owner: acct, Visibility: access.Private}
	ip := netip.MustParseAddr("192.0.2.7")
	now := time.Now()
	all := access.Key{Account: acct, Expires: now.Add(time.Hour)}
	for i := range 9 {
		all.Datasets = append(all.Datasets, uuid.New())
		all.IPRanges = append(all.IPRanges, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
	}
	all.Datasets = append(all.Datasets, id)
	all.IPRanges = append(all.IPRanges, netip.MustParsePrefix("192.0.2.0/24"))
	for _, k := range []struct {
		name string
		key  access.Key
	}{{"plain", access.Key{Account: acct}}, {"all-rules", all}} {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := access.UseKey(&k.key, id, d, ip, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Who may move a dataset between visibilities: every pair, for an admin and an editor.
func TestSetVisibility(t *testing.T) {
	admin := access.Caller{Account: uuid.New(), Role: access.RoleAdmin}
	editor := access.Caller{Account: admin.Account, Role: "editor"}
	all := []string{access.Private, access.Restricted, access.Public}
	// editorMay[from][to]: only no change and public -> private are an editor's.
	editorMay := map[string]map[string]bool{
		access.Private:    {access.Private: true},
		access.Restricted: {access.Restricted: true},
		access.Public:     {access.Public: true, access.Private: true},
	}
	for _, from := range all {
		for _, to := range all {
			if err := access.SetVisibility(admin, from, to); err != nil {
				t.Errorf("admin %s -> %s: %v", from, to, err)
			}
			err := access.SetVisibility(editor, from, to)
			if editorMay[from][to] != (err == nil) || (err != nil && !errors.Is(err, access.ErrVisibilityNeedsAdmin)) {
				t.Errorf("editor %s -> %s: %v", from, to, err)
			}
		}
	}
}
