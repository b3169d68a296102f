package tilehttp

import (
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tilegate/tilegate/internal/tileaccess"
	"github.com/tilegate/tilegate/internal/usage"
)

// tileUse counts one tile request's outcome in the usage meter.
type tileUse struct {
	h       *Handler
	now     time.Time
	key     uuid.UUID
	dataset uuid.UUID
	cred    usage.Credential
	dec     tileaccess.Decision // what admitted the request
}

// served counts the tile as served with a body of bytes (0 for 204, 304 and HEAD).
func (u tileUse) served(bytes int) {
	u.h.Meter.Served(u.now, u.key, u.dataset, u.cred, bytes)
}

// notServed gives back a quota reservation of a request that was admitted and not served.
func (u tileUse) notServed() {
	if dec := u.dec; dec.Key != nil && dec.Key.MonthlyQuota != nil {
		u.h.Meter.Release(u.now, u.key)
	}
}

func credentialOf(e *tileaccess.DatasetEntry, dec tileaccess.Decision) usage.Credential {
	switch {
	case dec.Key != nil:
		return usage.Key
	case e.Public:
		return usage.Public
	}
	return usage.Token
}

// CountRefusal counts a refusal of a request that named an existing API key (others are not
// counted: there is no key to count them for). It returns that key's id (uuid.Nil: none).
func (h *Handler) CountRefusal(now time.Time, e *tileaccess.DatasetEntry, creds *tileaccess.Credentials, r *tileaccess.Refusal) uuid.UUID {
	id := h.Access.NamedKey(e, creds)
	if id == uuid.Nil {
		return id
	}
	reason := r.Reason
	if reason == "" {
		reason = ReasonNotFound // 404: the key's account does not see the dataset
	}
	h.Meter.Refused(now, id, e.Dataset.ID, reason)
	return id
}

// limitedDetail are the {"detail"} texts of the limits' 429s.
var limitedDetail = map[string]string{
	usage.ReasonRateLimited:   "This API key's rate limit is exceeded; retry after Retry-After seconds",
	usage.ReasonQuotaExceeded: "This API key's monthly quota is used up; it renews at the start of next month (UTC)",
	ReasonAnonymousLimited:    "Too many tile token requests from this address; retry after Retry-After seconds, or use an API key",
}

// WriteLimited answers 429 for a key over its rate limit or quota: Retry-After, the reason, and
// the IETF RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-09),
// exposed to scripts as X-Tilegate-Reason is.
func WriteLimited(c echo.Context, v usage.Verdict) error {
	h := c.Response().Header()
	h.Set("Retry-After", strconv.FormatInt(v.RetryAfter, 10))
	h.Set("RateLimit-Policy", `"`+v.Policy+`";q=`+strconv.FormatInt(v.Quota, 10)+";w="+strconv.FormatInt(v.Window, 10))
	h.Set("RateLimit", `"`+v.Policy+`";r=`+strconv.FormatInt(v.Remaining, 10)+";t="+strconv.FormatInt(v.Reset, 10))
	h.Set("X-Tilegate-Reason", v.Reason)
	h.Set("Access-Control-Expose-Headers", "X-Tilegate-Reason, Retry-After, RateLimit, RateLimit-Policy")
	return WriteError(c, http.StatusTooManyRequests, limitedDetail[v.Reason])
}
