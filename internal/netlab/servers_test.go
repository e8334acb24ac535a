package netlab

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPRandomAndSum: /random streams RandomBytes(seed), different per
// seed, and POST /sum answers the SHA-256 of what it was sent.
func TestHTTPRandomAndSum(t *testing.T) {
	srv := httptest.NewServer(HTTPHandler("t"))
	defer srv.Close()
	get := func(url string) []byte {
		resp, err := http.Get(srv.URL + url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", url, resp.StatusCode, err)
		}
		return b
	}
	a, b := get("/random?bytes=100000&seed=1"), get("/random?bytes=100000&seed=2")
	want := make([]byte, 100000)
	io.ReadFull(RandomBytes(1), want)
	if !bytes.Equal(a, want) || bytes.Equal(a, b) {
		t.Fatal("/random is not RandomBytes(seed)")
	}
	resp, err := http.Post(srv.URL+"/sum", "application/octet-stream", bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(sum)) != fmt.Sprintf("%x", sha256.Sum256(a)) {
		t.Fatalf("/sum answered %q", sum)
	}
}
