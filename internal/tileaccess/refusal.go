package tileaccess

import (
	"errors"

	"github.com/tilegate/tilegate/access"
	"github.com/tilegate/tilegate/origin"
)

// Reasons a tile request is refused, sent in X-Tilegate-Reason. 401: the request has no usable
// credential; 403: a credential was understood and refused.
const (
	ReasonMissing       = "missing"             // 401: no key and no token on a non-public dataset
	ReasonMalformed     = "malformed"           // 401: sig, exp and scope not all given, or not well formed
	ReasonExpired       = "expired"             // 403: token past its exp (or impossibly far ahead)
	ReasonBadSignature  = "bad_signature"       // 403: token signature does not verify
	ReasonScope         = "scope"               // 403: token of an earlier access_version (access changed)
	ReasonUnknownKey    = "unknown_key"         // 403: no such API key
	ReasonRestricted    = "restricted"          // 403: restricted datasets take tile tokens, not API keys
	ReasonKeyExpired    = "key_expired"         // 403: the API key is past its expires_at
	ReasonKeyDisabled   = "key_disabled"        // 403: the API key is disabled
	ReasonDatasetScope  = "dataset_not_allowed" // 403: the key's dataset_ids do not list the dataset
	ReasonIP            = "ip"                  // 403: the client address is in none of the key's ip_ranges
	ReasonOrigin        = string(origin.ReasonOrigin)
	ReasonUnknownOrigin = string(origin.ReasonUnknownOrigin)
	ReasonUserAgent     = string(origin.ReasonUserAgent)
)

// DatasetNotFound is the detail of a 404: the same text whether the dataset does not exist or
// the credential's account does not see it.
const DatasetNotFound = "Dataset not found"

// Refusal is why a tile or TileJSON request is not served: Status 401 or 403 with a Reason
// (sent in X-Tilegate-Reason), or 404 (the credential's account does not see the dataset; no
// reason, nothing revealed). Detail is the {"detail"} text. Refusals are values: the server
// writes them, the dry-run check reports them, metrics count them by Reason.
type Refusal struct {
	Status int
	Reason string
	Detail string
}

// The refusals that carry no request-specific detail (origin refusals name the origin: see
// refuseOrigin).
var (
	RefuseMissing = &Refusal{401, ReasonMissing,
		"This dataset needs an API key (?key=) or a tile token (?sig=&exp=&scope=)"}
	RefuseMalformed = &Refusal{401, ReasonMalformed,
		"Malformed tile token: sig, exp and scope must all be given as the token endpoint returned them"}
	RefuseExpired = &Refusal{403, ReasonExpired,
		"The tile token has expired; fetch a new one"}
	RefuseBadSignature = &Refusal{403, ReasonBadSignature,
		"The tile token's signature is not valid"}
	RefuseScope = &Refusal{403, ReasonScope,
		"The tile token was issued before access to this dataset changed; fetch a new one"}
	RefuseUnknownKey = &Refusal{403, ReasonUnknownKey, "Unknown API key"}
	RefuseRestricted = &Refusal{403, ReasonRestricted,
		"This dataset is restricted: API keys cannot read it, use a tile token"}
	RefuseUnknownOrigin = &Refusal{403, ReasonUnknownOrigin,
		"This API key only allows listed origins, and the request has neither Origin nor Referer"}
	RefuseUserAgent = &Refusal{403, ReasonUserAgent,
		"This API key does not allow the request's User-Agent"}
	RefuseNotFound     = &Refusal{Status: 404, Detail: DatasetNotFound}
	RefuseKeyExpired   = &Refusal{403, ReasonKeyExpired, "This API key has expired"}
	RefuseKeyDisabled  = &Refusal{403, ReasonKeyDisabled, "This API key is disabled"}
	RefuseDatasetScope = &Refusal{403, ReasonDatasetScope,
		"This API key is not allowed to read this dataset"}
	RefuseIP = &Refusal{403, ReasonIP, "This API key does not allow the client's address"}
)

// keyRefusal is the tile answer to a refusal of the access rules (access.UseKey).
func keyRefusal(err error) *Refusal {
	switch {
	case errors.Is(err, access.ErrNotVisible):
		return RefuseNotFound
	case errors.Is(err, access.ErrRestricted):
		return RefuseRestricted
	case errors.Is(err, access.ErrKeyRetired):
		return RefuseUnknownKey
	case errors.Is(err, access.ErrKeyDisabled):
		return RefuseKeyDisabled
	case errors.Is(err, access.ErrKeyExpired):
		return RefuseKeyExpired
	case errors.Is(err, access.ErrDatasetNotAllowed):
		return RefuseDatasetScope
	case errors.Is(err, access.ErrIPNotAllowed):
		return RefuseIP
	}
	// Unreachable: UseKey returns only the errors above. Refuse rather than serve.
	return RefuseUnknownKey
}

func refuseOrigin(originH, refererH string) *Refusal {
	scheme, host, port, _ := origin.RequestOrigin(originH, refererH)
	o := scheme + "://" + host
	if port != "" {
		o += ":" + port
	}
	return &Refusal{403, ReasonOrigin, "This API key does not allow the origin " + o}
}
