package testnginx

import (
	"io"
	"net/http"
	"testing"
)

func TestServesItsConfiguration(t *testing.T) {
	s := Start(t, `server { listen {{LISTEN}}; location / { return 200 "hello from nginx"; } }`)
	resp, err := http.Get(s.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello from nginx" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}
