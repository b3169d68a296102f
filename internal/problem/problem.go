// Package problem builds every error answer tilegate sends: an RFC 9457 problem details object
// ({"type","title","status","detail"}) whose detail is the text FastAPI clients already read, or
// for a 422 FastAPI's list of validation errors. GeoLens's SDKs read title and status; MapTiler
// and GeoLens front-end code reads detail. Both work on the same body.
package problem

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Media types an error answer is sent as.
const (
	JSON        = "application/json"
	ProblemJSON = "application/problem+json"
)

// Body is an error answer. Type is always "about:blank": the status says what kind of problem it
// is, and Title is then the status's standard phrase, as RFC 9457 §4.2.1 asks.
type Body struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail any    `json:"detail"`
}

// New is the body for status with detail (a string, or the 422 list of validation errors).
func New(status int, detail any) Body {
	title := http.StatusText(status)
	if title == "" {
		title = "Error"
	}
	return Body{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

// MediaType chooses how an error answer is labelled for a request's Accept header:
// application/problem+json only when the client names it (q > 0) and prefers it at least as much
// as application/json. No Accept, "*/*", "application/*" and "application/json" get
// application/json: clients written against the seed documents send those, and some (generated
// ones) parse only the Content-Type their spec named. The body is the same either way.
func MediaType(accept string) string {
	if accept == "" {
		return JSON
	}
	problemQ, jsonQ, jsonRank := -1.0, 0.0, 0
	for _, clause := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(clause))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		// application/json's weight is that of the most specific range that matches it (RFC
		// 9110 §12.5.1); problem+json counts only when named.
		rank := map[string]int{"*/*": 1, "application/*": 2, JSON: 3}[mt]
		switch {
		case mt == ProblemJSON:
			problemQ = max(problemQ, q)
		case rank > jsonRank:
			jsonQ, jsonRank = q, rank
		}
	}
	if problemQ > 0 && problemQ >= jsonQ {
		return ProblemJSON
	}
	return JSON
}

// Write sends the error answer for status and detail, labelled for accept (the request's Accept
// header). Headers already set on w (WWW-Authenticate, Retry-After, CORS) are kept.
func Write(w http.ResponseWriter, accept string, status int, detail any) error {
	b, err := json.Marshal(New(status, detail))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", MediaType(accept))
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
