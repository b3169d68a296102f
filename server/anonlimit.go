package server

import (
	"math"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/tilegate/tilegate/internal/usage"
	"github.com/tilegate/tilegate/tilehttp"
)

// reasonAnonymousLimited is X-Tilegate-Reason of an anonymous token call over its address's rate.
const reasonAnonymousLimited = tilehttp.ReasonAnonymousLimited

// The anonymous minting rate's defaults (Config.AnonymousMintRate, AnonymousMintBurst): a map
// page mints one batch per load and one every ~15 minutes after; 50 at once allows an office
// behind one address to open many maps together.
const (
	DefaultAnonymousMintRate  = 5.0
	DefaultAnonymousMintBurst = 50
)

// anonLimitAddresses bounds the addresses whose buckets are remembered: the least recently
// seen is forgotten first (it then starts again with a full bucket).
const anonLimitAddresses = 65536

// anonLimiter rate-limits token minting without a credential per client address (a token
// bucket each), so nobody can mint public tokens at machine speed. Per replica: N replicas
// admit N times the rate.
type anonLimiter struct {
	rate  rate.Limit // nil limiter when rate is 0 (off)
	burst int
	mu    sync.Mutex
	addrs *lru.Cache[netip.Addr, *rate.Limiter]
}

func newAnonLimiter(perSecond float64, burst int) *anonLimiter {
	if perSecond <= 0 {
		return nil
	}
	addrs, _ := lru.New[netip.Addr, *rate.Limiter](anonLimitAddresses) // size > 0: never fails
	return &anonLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), addrs: addrs}
}

// admit takes one call of addr at now; a Verdict with a Reason when it is over the rate.
// Requests whose address cannot be told share the zero address's bucket.
func (l *anonLimiter) admit(addr netip.Addr, now time.Time) usage.Verdict {
	if l == nil {
		return usage.Verdict{}
	}
	l.mu.Lock()
	lim, ok := l.addrs.Get(addr)
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.addrs.Add(addr, lim)
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay == 0 {
		return usage.Verdict{}
	}
	r.CancelAt(now) // refused calls do not use up the bucket
	wait := int64(math.Ceil(delay.Seconds()))
	return usage.Verdict{Reason: reasonAnonymousLimited, RetryAfter: max(wait, 1), Policy: "anonymous",
		Quota: int64(l.burst), Window: int64(math.Ceil(float64(l.burst) / float64(l.rate))), Reset: max(wait, 1)}
}
