package main

import "testing"

// The upload command names TILEGATE_URL in its errors without the password in it.
func TestUploadURLRedacted(t *testing.T) {
	for raw, want := range map[string]string{
		"http://admin:s3cret@127.0.0.1:1": "http://admin:xxxxx@127.0.0.1:1",
		"http://127.0.0.1:1":              "http://127.0.0.1:1",
		"http://admin:s3%zzcret@host":     "TILEGATE_URL",
	} {
		if got := redactedURL(raw); got != want {
			t.Errorf("redactedURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
