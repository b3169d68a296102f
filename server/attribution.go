package server

import (
	"errors"

	"github.com/tilegate/tilegate/attribution"
)

// attributionLoc is where the API's dataset bodies carry the attribution.
var attributionLoc = []any{"body", "attribution"}

// checkAttribution answers 422 at loc when a written attribution is not one tilegate may serve
// as HTML (package attribution decides; its reason is the message). nil is no attribution.
func checkAttribution(loc []any, a *string) error {
	return checkAttributionHint(loc, a, "")
}

// checkAttributionHint is checkAttribution with a hint appended to the message.
func checkAttributionHint(loc []any, a *string, hint string) error {
	if a == nil {
		return nil
	}
	var e *attribution.Error
	if err := attribution.Check(*a); errors.As(err, &e) {
		return invalid(loc, nil, "attribution "+e.Reason+hint)
	} else if err != nil {
		return err
	}
	return nil
}

// safeAttribution is the attribution as maps receive it: rows stored before the rule are escaped.
func safeAttribution(a *string) *string {
	if a == nil {
		return nil
	}
	s := attribution.Safe(*a)
	return &s
}
