package usage

import (
	"math"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Refusal reasons of the limits (X-Tilegate-Reason).
const (
	ReasonRateLimited   = "rate_limited"
	ReasonQuotaExceeded = "quota_exceeded"
)

// RateLimit is a key's token bucket: RPS tokens a second, at most Burst saved up.
type RateLimit struct {
	RPS   int
	Burst int
}

// Verdict is the limits' answer to a request: Reason "" admits it. A refusal carries when to
// retry and what the IETF RateLimit headers say (draft-ietf-httpapi-ratelimit-headers-09:
// `RateLimit-Policy: "<policy>";q=<quota>;w=<window>` and `RateLimit: "<policy>";r=<remaining>;t=<reset>`).
type Verdict struct {
	Reason string
	// RetryAfter is in whole seconds (at least 1).
	RetryAfter int64
	// Policy is the policy's name; Quota per Window seconds; Remaining now, Reset seconds until
	// the quota is (partly) restored.
	Policy        string
	Quota, Window int64
	Remaining     int64
	Reset         int64
}

// keyLimits is one key's limit state on this replica.
type keyLimits struct {
	mu sync.Mutex

	// The token bucket: tokens at last (nanoseconds of the meter's monotonic clock, which a
	// wall clock set back cannot stop), for the limit and replica share it was computed with;
	// filled once it was first filled.
	tokens    float64
	last      int64
	filled    bool
	rate      float64 // tokens per second (this replica's share)
	capacity  float64
	configRPS int
	configBur int

	// The monthly quota: month is year×12+month-1 of the counts; base the key's tiles this month
	// as flushed by every replica when last read (synced says it was read this month); unflushed
	// what this replica admitted since that is not in base yet.
	month     int64
	monthFrom int64 // the month's first and next month's first second (unix): month without a date computation
	monthTo   int64
	base      int64
	unflushed int64
	synced    bool
	quota     bool // the key has (had) a quota: it is synced with the database

	// A fresh quota (the month new here: a new month, a restart, a key idle an hour): requests
	// wait for the first read of its count until syncDone is closed (the read was tried), but
	// never past waitUntil (SyncWait after freshAt: a database away is waited for once); and
	// while capped (until a read at least a flush interval after freshAt, which sees what other
	// replicas admitted meanwhile) this replica admits at most its share of what was left,
	// ceil((quota-freshBase)/N), freshBase being the count as first read (0 until then);
	// sinceFresh counts what it admitted since freshAt (monotonic clock).
	syncDone   chan struct{}
	capped     bool
	freshAt    time.Duration
	waitUntil  time.Duration
	freshBase  int64
	freshRead  bool
	sinceFresh int64

	lastAdmit int64 // unix seconds of the last request (idle state is forgotten)
}

func monthIndex(t time.Time) int64 {
	y, m, _ := t.UTC().Date()
	return int64(y)*12 + int64(m) - 1
}

func monthStart(idx int64) time.Time {
	return time.Date(int(idx/12), time.Month(idx%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// admitRate takes a token from the bucket, refilled for the time since its last use. replicas
// is the number of live replicas: this one takes 1/replicas of the limit.
func (k *keyLimits) admitRate(now int64, rl RateLimit, replicas int) Verdict {
	rate := float64(rl.RPS) / float64(replicas)
	capacity := math.Max(1, float64(rl.Burst)/float64(replicas))
	if k.configRPS != rl.RPS || k.configBur != rl.Burst || !k.filled {
		// New, or the key's limit changed: start full.
		k.configRPS, k.configBur = rl.RPS, rl.Burst
		k.tokens, k.last, k.filled = capacity, now, true
	}
	k.rate, k.capacity = rate, capacity
	if now > k.last {
		k.tokens = math.Min(capacity, k.tokens+float64(now-k.last)*rate/1e9)
		k.last = now
	}
	if k.tokens > capacity {
		k.tokens = capacity // the share shrank: another replica joined
	}
	if k.tokens >= 1 {
		k.tokens--
		return Verdict{}
	}
	wait := (1 - k.tokens) / rate // seconds until a token
	secs := int64(math.Ceil(wait))
	if secs < 1 {
		secs = 1
	}
	return Verdict{Reason: ReasonRateLimited, RetryAfter: secs, Policy: "default",
		Quota: int64(rl.RPS), Window: 1, Remaining: 0, Reset: secs}
}

// enterMonth moves the key's quota state to now's month (the meter's wall clock); it reports
// whether the month is new here (its count must be read from the database).
func (k *keyLimits) enterMonth(now time.Time) bool {
	fresh := false
	if u := now.Unix(); !k.quota || u < k.monthFrom || u >= k.monthTo {
		month := monthIndex(now)
		fresh = !k.quota || month != k.month
		if fresh {
			k.quota, k.month, k.base, k.unflushed, k.synced = true, month, 0, 0, false
		}
		k.monthFrom, k.monthTo = monthStart(month).Unix(), monthStart(month+1).Unix()
	}
	return fresh
}

// admitQuota reserves one tile of the month's quota (enterMonth first). While the quota is
// capped this replica admits at most share since it became fresh; retry is when to try again
// then (the cap lifts with a read of the count), in whole seconds.
func (k *keyLimits) admitQuota(now time.Time, quota, share, retry int64) Verdict {
	if k.base+k.unflushed >= quota {
		secs := max(1, k.monthTo-now.Unix())
		return Verdict{Reason: ReasonQuotaExceeded, RetryAfter: secs, Policy: "monthly",
			Quota: quota, Window: k.monthTo - k.monthFrom, Remaining: 0, Reset: secs}
	}
	if k.capped && k.sinceFresh >= share {
		secs := max(1, retry)
		return Verdict{Reason: ReasonQuotaExceeded, RetryAfter: secs, Policy: "monthly",
			Quota: quota, Window: k.monthTo - k.monthFrom, Remaining: 0, Reset: secs}
	}
	k.unflushed++
	if k.capped {
		k.sinceFresh++
	}
	return Verdict{}
}

// shareOf is a replica's share of what was left of quota when it became fresh here:
// ceil((quota-freshBase)/n).
func (k *keyLimits) shareOf(quota int64, n int) int64 {
	left := max(0, quota-k.freshBase)
	return (left + int64(n) - 1) / int64(n)
}

// release gives back a reservation of a request that was not served after all.
func (k *keyLimits) release(now time.Time) {
	if k.quota && k.month == monthIndex(now) && k.unflushed > 0 {
		k.unflushed--
		if k.capped && k.sinceFresh > 0 {
			k.sinceFresh--
		}
	}
}

// used is the key's tiles this month as this replica knows them.
func (k *keyLimits) used(month int64) (int64, bool) {
	if !k.quota || k.month != month {
		return 0, false
	}
	return k.base + k.unflushed, true
}

// quotaKeys returns the ids of the keys in m with a quota in month (only those not read from
// the database yet when onlyUnsynced).
func quotaKeys(m *sync.Map, month int64, onlyUnsynced bool) []uuid.UUID {
	var out []uuid.UUID
	m.Range(func(id, v any) bool {
		k := v.(*keyLimits)
		k.mu.Lock()
		if k.quota && k.month == month && (!onlyUnsynced || !k.synced) {
			out = append(out, id.(uuid.UUID))
		}
		k.mu.Unlock()
		return true
	})
	return out
}
