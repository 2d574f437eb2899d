package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
)

// fixtureKallsyms is a kernel of two functions, for the tests that need
// no kernel.
const fixtureKallsyms = `ffffffff81000000 T _stext
ffffffff81000000 T vfs_read
ffffffff81000040 T __x64_sys_read
ffffffff81000080 T _etext
`

// noText is kernel text that reads as int3 everywhere.
type noText struct{}

func (noText) ReadAt(p []byte, addr uint64) error {
	for i := range p {
		p[i] = 0xcc
	}
	return nil
}
func (noText) Close() error { return nil }

// fixtureServer is a server over the fixture kernel, and its address.
func fixtureServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	syms, err := callgraph.ParseKallsyms(strings.NewReader(fixtureKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Graph: callgraph.NewGraph(syms, noText{}, false), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func get(t *testing.T, u string, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestTokenRequired checks that the page and every API path refuse a
// request without the token, and that loading the page with the token
// sets the cookie that carries it from then on.
func TestTokenRequired(t *testing.T) {
	s, hs := fixtureServer(t)
	for _, path := range []string{"/api/caps", "/api/symbols?q=read", "/api/function?name=vfs_read", "/api/experiments", "/api/events", "/api/experiment-files",
		"/api/hunts", "/api/runs", "/api/check?spec=vfs_read:timer", "/runs/r/report.html"} {
		if r := get(t, hs.URL+path, nil); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %s, want 401", path, r.Status)
		}
		if r := get(t, hs.URL+path, map[string]string{"X-Autoprof-Token": strings.Repeat("0", 32)}); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %s, want 401", path, r.Status)
		}
	}
	if r := get(t, hs.URL+"/api/symbols?q=read", map[string]string{"X-Autoprof-Token": s.Token()}); r.StatusCode != http.StatusOK {
		t.Errorf("with the token in the header: %s, want 200", r.Status)
	}
	if r := get(t, hs.URL+"/", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("the page without a token: %s, want 403", r.Status)
	}
	if r := get(t, hs.URL+"/?token=nope", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("the page with a wrong token: %s, want 403", r.Status)
	}
	u, _ := url.Parse(hs.URL)
	r := get(t, s.URL(addr(u.Host)), nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
		t.Fatalf("the page with the token: %s to %q, want 303 to / (the token out of the address bar)", r.Status, r.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "autoprof_token_"+u.Port() {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != s.Token() || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v; want the token, HttpOnly, SameSite=Strict, named after the port", cookie)
	}
	for _, path := range []string{"/", "/api/caps"} {
		if r := get(t, hs.URL+path, map[string]string{"Cookie": cookie.Name + "=" + cookie.Value}); r.StatusCode != http.StatusOK {
			t.Errorf("%s with the cookie: %s, want 200", path, r.Status)
		}
	}
	if r := get(t, hs.URL+"/api/caps", map[string]string{"Cookie": "autoprof_token_1=" + cookie.Value}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("with another port's cookie: %s, want 401", r.Status)
	}
}

// addr is a net.Addr of a host:port string.
type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

// TestCrossOriginRefused checks that a request with the token but from
// another site is refused: a foreign Origin, a browser's cross-site
// Sec-Fetch-Site, a POST that is not JSON (what an HTML form sends).
func TestCrossOriginRefused(t *testing.T) {
	s, hs := fixtureServer(t)
	tok := map[string]string{"X-Autoprof-Token": s.Token()}
	with := func(k, v string) map[string]string { return map[string]string{"X-Autoprof-Token": s.Token(), k: v} }
	for _, c := range []struct {
		header map[string]string
		want   int
	}{
		{tok, http.StatusOK},
		{with("Origin", hs.URL), http.StatusOK},
		{with("Origin", "http://evil.example"), http.StatusForbidden},
		{with("Origin", "null"), http.StatusForbidden},
		{with("Origin", strings.Replace(hs.URL, "127.0.0.1", "localhost", 1)), http.StatusForbidden},
		{with("Sec-Fetch-Site", "same-origin"), http.StatusOK},
		{with("Sec-Fetch-Site", "cross-site"), http.StatusForbidden},
		{with("Sec-Fetch-Site", "same-site"), http.StatusForbidden},
	} {
		if r := get(t, hs.URL+"/api/caps", c.header); r.StatusCode != c.want {
			t.Errorf("%v: %s, want %d", c.header, r.Status, c.want)
		}
	}
	req, _ := http.NewRequest("POST", hs.URL+"/api/experiments", strings.NewReader(`{}`))
	req.Header.Set("X-Autoprof-Token", s.Token())
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a text/plain POST: %s, want 415", resp.Status)
	}
}

// TestPlainNames checks that the names the page gives for files and
// outputs stay in the server's directory, and that /runs/ serves a run's
// report files only.
func TestPlainNames(t *testing.T) {
	s, hs := fixtureServer(t)
	run := filepath.Join(s.dir, "r")
	os.Mkdir(run, 0o755)
	for _, f := range []string{"report.html", "secret.txt"} {
		os.WriteFile(filepath.Join(run, f), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(s.dir, "report.html"), []byte("x"), 0o644)
	tok := map[string]string{"X-Autoprof-Token": s.Token()}
	for path, want := range map[string]int{
		"/runs/r/report.html":            http.StatusOK,
		"/runs/r/secret.txt":             http.StatusNotFound,
		"/runs/../report.html":           http.StatusTemporaryRedirect, // to /report.html, which is nothing
		"/runs/..%2f/report.html":        http.StatusNotFound,
		"/runs/%2e%2e/report.html":       http.StatusNotFound,
		"/runs/r/..%2fsecret.txt":        http.StatusNotFound,
		"/runs/.hidden/report.html":      http.StatusNotFound,
		"/api/experiment-file?name=../x": http.StatusBadRequest,
	} {
		if r := get(t, hs.URL+path, tok); r.StatusCode != want {
			t.Errorf("%s: %s, want %d", path, r.Status, want)
		}
	}
	if r := get(t, hs.URL+"/report.html", tok); r.StatusCode != http.StatusNotFound {
		t.Errorf("/report.html: %s, want 404", r.Status)
	}
	for _, name := range []string{"exp.json", "run-1", "a_b.yaml"} {
		if _, err := s.path(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "../x", "/etc/passwd", ".hidden", "a/b", "..", "a\\b", "x\x00", strings.Repeat("a", 101)} {
		if p, err := s.path(name); err == nil {
			t.Errorf("%q: accepted as %s", name, p)
		}
	}
}
