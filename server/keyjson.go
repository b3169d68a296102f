package server

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/tilegate/tilegate/gen"
	"github.com/tilegate/tilegate/store"
)

// keyPageJSON answers a page of API keys by appending its JSON directly from the stored keys.
// It writes byte for byte what encoding/json writes for gen.ListAPIKeys200JSONResponse built
// with apiKeyOut (TestKeyPageJSONMatchesGenerated checks it, and FuzzKeyPageJSON its strings):
// the generated shape allocates a map per nullable field (nullable.Nullable is a map) and
// encodes by reflection, which was over half of a 100-key page's CPU (issue #20, goal 1 ms).
type keyPageJSON struct {
	page store.Page[store.APIKey]
	used map[uuid.UUID]int64
	now  time.Time
}

var _ gen.ListAPIKeysResponseObject = keyPageJSON{}

func (r keyPageJSON) VisitListAPIKeysResponse(w http.ResponseWriter) error {
	b := r.append(make([]byte, 0, 768*len(r.page.Items)+64))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}

// append writes the page as gen.APIKeyPage: cursor, items, total_count, then the newline
// json.Encoder ends with.
func (r keyPageJSON) append(b []byte) []byte {
	b = append(b, `{"cursor":`...)
	if r.page.Next != nil {
		b = appendJSONString(b, r.page.Next.Encode())
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"items":[`...)
	for i, k := range r.page.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKeyJSON(b, k, r.used[k.ID], r.now)
	}
	b = append(b, `],"total_count":`...)
	b = strconv.AppendInt(b, r.page.Total, 10)
	return append(b, "}\n"...)
}

// appendKeyJSON writes one key as gen.APIKey, fields in the generated struct's order, with
// apiKeyOut's rules (a scoped key's ids, a previous token only within its grace at now).
func appendKeyJSON(b []byte, k store.APIKey, used int64, now time.Time) []byte {
	b = append(b, `{"changed":`...)
	b = appendJSONTime(b, k.Changed)
	b = append(b, `,"created":`...)
	b = appendJSONTime(b, k.Created)
	b = append(b, `,"dataset_ids":`...)
	if k.DatasetScoped {
		b = append(b, '[')
		for i, id := range k.DatasetIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONUUID(b, id)
		}
		b = append(b, ']')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"description":`...)
	b = appendJSONStringPtr(b, k.Description)
	b = append(b, `,"enabled":`...)
	b = strconv.AppendBool(b, k.Enabled)
	b = append(b, `,"expires_at":`...)
	b = appendJSONTimePtr(b, k.ExpiresAt)
	b = append(b, `,"id":`...)
	b = appendJSONUUID(b, k.ID)
	b = append(b, `,"ip_ranges":`...)
	if k.IPRanges != nil {
		b = appendJSONStrings(b, *k.IPRanges)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"last_used":`...)
	b = appendJSONTimePtr(b, k.LastUsed)
	b = append(b, `,"monthly_quota":`...)
	if k.MonthlyQuota != nil {
		b = strconv.AppendInt(b, *k.MonthlyQuota, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"name":`...)
	b = appendJSONString(b, k.Name)
	b = append(b, `,"origins":`...)
	if k.Origins == nil {
		b = append(b, "[]"...) // apiKeyOut's rule: never null
	} else {
		b = appendJSONStrings(b, k.Origins)
	}
	b = append(b, `,"previous_token_expires_at":`...)
	if k.PreviousTokenExpiresAt != nil && k.PreviousTokenExpiresAt.After(now) {
		b = appendJSONTime(b, *k.PreviousTokenExpiresAt)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"rate_limit":`...)
	if k.RateLimitRPS != nil && k.RateLimitBurst != nil {
		b = append(b, `{"burst":`...)
		b = strconv.AppendInt(b, int64(*k.RateLimitBurst), 10)
		b = append(b, `,"requests_per_second":`...)
		b = strconv.AppendInt(b, int64(*k.RateLimitRPS), 10)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	if k.Token != "" { // omitempty in the generated type
		b = append(b, `,"token":`...)
		b = appendJSONString(b, k.Token)
	}
	b = append(b, `,"usage_this_month":`...)
	b = strconv.AppendInt(b, used, 10)
	b = append(b, `,"user_agent":`...)
	b = appendJSONStringPtr(b, k.UserAgent)
	return append(b, '}')
}

// appendJSONTime writes t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendJSONTimePtr(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	return appendJSONTime(b, *t)
}

func appendJSONUUID(b []byte, id uuid.UUID) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	b = append(b, '"')
	b = append(b, s[:]...)
	return append(b, '"')
}

func appendJSONStrings(b []byte, list []string) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

// appendJSONString quotes s exactly as encoding/json does with HTML escaping on (its default):
// <, > and & as \u003c…, U+2028/U+2029 escaped, invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
