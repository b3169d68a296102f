// Package access decides who may see, use and change a dataset, and what an API key may read:
// the one place these rules live. It knows nothing of HTTP or SQL: callers gather the facts
// (a Dataset as one caller sees it, a Key as loaded) and get nil or a sentinel error, which
// each caller maps to its answer once (a 404 or 403, a tile refusal, a dry-run reason).
package access

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Dataset visibilities.
const (
	Private    = "private"
	Restricted = "restricted"
	Public     = "public"
)

// RoleAdmin is the role that may use its own account's restricted datasets without a grant.
const RoleAdmin = "admin"

// Why a dataset or a key is refused.
var (
	// ErrNotVisible: the caller's account neither owns the dataset nor was it shared with it
	// (and it is not public): as far as the caller knows, it does not exist.
	ErrNotVisible = errors.New("dataset not visible")
	// ErrNotOwner: the caller sees the dataset but it is another account's.
	ErrNotOwner = errors.New("dataset belongs to another account")
	// ErrRestricted: the caller sees a restricted dataset it may not use.
	ErrRestricted = errors.New("dataset is restricted")
	// ErrVisibilityNeedsAdmin: the visibility change is for the account's admins to make.
	ErrVisibilityNeedsAdmin = errors.New("this visibility change needs the admin role")

	ErrKeyRetired        = errors.New("key token retired") // a previous token past its grace
	ErrKeyDisabled       = errors.New("key disabled")
	ErrKeyExpired        = errors.New("key expired")
	ErrDatasetNotAllowed = errors.New("dataset not allowed for this key")
	ErrIPNotAllowed      = errors.New("client address not allowed for this key")
)

// Caller is who asks: an account and, for a person or service, its principal and role. An API
// key acts as its account with no principal and no role.
type Caller struct {
	Account   uuid.UUID
	Principal uuid.UUID
	Role      string
}

// Dataset is what the rules need of a dataset, as seen by one caller.
type Dataset struct {
	Owner      uuid.UUID
	Visibility string
	// AccountGrant: shared with the caller's account; PrincipalGrant: granted to the caller's
	// principal (which lets it use a restricted dataset of its own account).
	AccountGrant, PrincipalGrant bool
}

// See: the dataset is the caller's account's, public, or shared with the caller's account.
func See(c Caller, d Dataset) error {
	if d.Owner == c.Account || d.Visibility == Public || d.AccountGrant {
		return nil
	}
	return ErrNotVisible
}

// Use: the caller sees the dataset and it is not restricted — or the caller is an admin of its
// account, or holds a principal grant on it.
func Use(c Caller, d Dataset) error {
	if err := See(c, d); err != nil {
		return err
	}
	if d.Visibility != Restricted || d.PrincipalGrant || (d.Owner == c.Account && c.Role == RoleAdmin) {
		return nil
	}
	return ErrRestricted
}

// Own: the caller sees the dataset and its account is the dataset's (who may change it).
func Own(c Caller, d Dataset) error {
	if err := See(c, d); err != nil {
		return err
	}
	if d.Owner != c.Account {
		return ErrNotOwner
	}
	return nil
}

// SetVisibility: whether caller c may move a dataset of its own account from one visibility to
// another (a new dataset moves from private, the default). Publishing a dataset to everyone and
// deciding which of the account's own members may use it (restricted) are the admins' calls:
// an editor who could lift restricted would mint the tokens it was just refused. Everything
// else — no change, or public back to private — any writer may do.
func SetVisibility(c Caller, from, to string) error {
	if from == to || c.Role == RoleAdmin {
		return nil
	}
	if to == Public || from == Restricted || to == Restricted {
		return ErrVisibilityNeedsAdmin
	}
	return nil
}

// Listed: the dataset is in the caller's dataset list — its account's own and those shared with
// it. Other accounts' public datasets are visible (See) but not listed: the list is the
// account's catalogue, not everyone's.
func Listed(c Caller, d Dataset) bool {
	return See(c, d) == nil && (d.Owner == c.Account || d.AccountGrant)
}

// Key is an API key's rules as the tile path holds them.
type Key struct {
	Account uuid.UUID
	// Disabled: refused until enabled again.
	Disabled bool
	// Expires is when the key stops working; zero: never.
	Expires time.Time
	// Datasets limits the key to these datasets; nil: every dataset its account may use.
	Datasets []uuid.UUID
	// IPRanges limits the client addresses; nil: any.
	IPRanges []netip.Prefix
	// TokenUntil is, for a rotated key's previous token, the end of its grace; zero for the
	// current token.
	TokenUntil time.Time
}

// NeedsIP reports whether UseKey looks at the client address (so callers need not work it out).
func (k *Key) NeedsIP() bool { return k.IPRanges != nil }

// UseKey decides whether key k may read a dataset (id, and its facts for k's account) for a
// client at ip, at now. The key's own state comes first (a retired, disabled or expired key is
// refused whatever it asks for), then the dataset as the key's account sees it, then the key's
// scope. Origin and user-agent rules are the origin package's and come after.
func UseKey(k *Key, id uuid.UUID, d Dataset, ip netip.Addr, now time.Time) error {
	switch {
	case !k.TokenUntil.IsZero() && !now.Before(k.TokenUntil):
		return ErrKeyRetired
	case k.Disabled:
		return ErrKeyDisabled
	case !k.Expires.IsZero() && !now.Before(k.Expires):
		return ErrKeyExpired
	}
	if err := Use(Caller{Account: k.Account}, d); err != nil {
		return err
	}
	if k.Datasets != nil && !slices.Contains(k.Datasets, id) {
		return ErrDatasetNotAllowed
	}
	if k.IPRanges != nil && !inRanges(k.IPRanges, ip) {
		return ErrIPNotAllowed
	}
	return nil
}

func inRanges(ranges []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap() // an IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d
	for _, p := range ranges {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// MaxIPRanges is the most ranges a key may list.
const MaxIPRanges = 100

// RangeError names the entry of a range list that is not a CIDR or an address.
type RangeError struct {
	Index int
	Value string
}

func (e *RangeError) Error() string {
	return "not a CIDR range or an IP address (such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)"
}

// NormalizeRanges parses a key's ip_ranges: each a CIDR (its host bits cleared: 10.0.0.1/8 is
// 10.0.0.0/8) or a bare address (that address alone); IPv4-mapped IPv6 is written as IPv4.
// Duplicates are dropped, the first kept.
func NormalizeRanges(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	seen := map[netip.Prefix]bool{}
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, &RangeError{Index: i, Value: s}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	return out, nil
}
