// Package ui is autoprof's GUI (GILK's, in the browser): a local web
// server over the library packages. It serves an embedded page and a JSON
// API under /api/ (docs/ui.md): the kernel's functions grouped and
// searchable with what each backend says of them, a function's listing
// and control-flow graph, its callers and callees, and experiments run
// through splice.Run with their readings streamed as server-sent events.
//
// Every /api/ request must carry the server's token (the cookie the page
// gets when loaded from the URL with the token, or the X-Autoprof-Token
// header) and come from the page's own origin.
package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/callgraph/livetext"
	"github.com/autoprof/autoprof/internal/flame"
	"github.com/autoprof/autoprof/splice"
)

//go:embed assets
var assets embed.FS

// Options configure New.
type Options struct {
	// Graph is the kernel's call graph; nil opens the running kernel's
	// (and Close closes it).
	Graph *callgraph.Graph
	// Dir is where experiment files are saved and loaded and where
	// outputs are written, each under the plain name the user types
	// (default: the working directory).
	Dir string
	// Orphaned is how long experiments run on with no page connected
	// before they are stopped (default 10s): a reload reconnects within
	// it, a closed page does not.
	Orphaned time.Duration
}

// Server is the ui's HTTP handler and the state behind it: the graph, a
// session that checks placements, and the experiments. Close stops every
// experiment and releases everything.
type Server struct {
	token    string
	graph    *callgraph.Graph
	ownGraph bool
	dir      string
	orphaned time.Duration
	grouper  *Grouper
	mux      *http.ServeMux

	checkOnce sync.Once
	check     *splice.Session // placement checks only: nothing is inserted through it
	checkErr  error

	symsOnce sync.Once
	syms     []groupedSymbol

	exps experiments
	// targets are the indirect-call targets the experiments captured.
	targets observedTargets
}

// New returns a server over the running kernel (or opts.Graph) with a
// fresh random token.
func New(opts Options) (*Server, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("ui token: %w", err)
	}
	s := &Server{token: hex.EncodeToString(tok), graph: opts.Graph, dir: opts.Dir, orphaned: opts.Orphaned}
	if s.dir == "" {
		s.dir = "."
	}
	if s.orphaned == 0 {
		s.orphaned = 10 * time.Second
	}
	if s.graph == nil {
		g, err := livetext.OpenGraph()
		if err != nil {
			return nil, fmt.Errorf("opening the kernel's call graph: %w", err)
		}
		s.graph, s.ownGraph = g, true
	}
	s.grouper = liveGrouper()
	s.exps.init(s)
	s.routes()
	return s, nil
}

// liveGrouper reads the running kernel's modules.dep where there is one.
func liveGrouper() *Grouper {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return NewGrouper(nil)
	}
	f, err := os.Open(filepath.Join("/lib/modules", strings.TrimSpace(string(rel)), "modules.dep"))
	if err != nil {
		return NewGrouper(nil)
	}
	defer f.Close()
	return NewGrouper(f)
}

// Token returns the token every API request must carry.
func (s *Server) Token() string { return s.token }

// URL returns the page's address on the listener at addr, token included.
func (s *Server) URL(addr net.Addr) string {
	return fmt.Sprintf("http://%s/?token=%s", addr, s.token)
}

// Serve serves HTTP on l until ctx ends, then stops every experiment
// and closes the listener.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	// Requests' contexts end with the server's, so that event streams
	// end at once instead of holding Shutdown up.
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.exps.stopAll()
	cancel()
	sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	hs.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops every experiment, withdrawing their instruments, and
// releases the placement session and the graph. A second call returns
// os.ErrClosed.
func (s *Server) Close() error {
	if !s.exps.close() {
		return os.ErrClosed
	}
	var errs []error
	if s.check != nil {
		errs = append(errs, s.check.Close())
	}
	if s.ownGraph {
		errs = append(errs, s.graph.Close())
	}
	return errors.Join(errs...)
}

// checker returns the session that checks placements, opened on first
// use.
func (s *Server) checker() (*splice.Session, error) {
	s.checkOnce.Do(func() {
		s.check, s.checkErr = splice.Open(context.Background(), splice.Options{Graph: s.graph})
	})
	return s.check, s.checkErr
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /app.js", files)
	s.mux.Handle("GET /style.css", files)
	s.mux.HandleFunc("GET /flame.js", serveFlame)
	s.mux.HandleFunc("GET /{$}", s.index)
	s.api("GET /api/caps", s.handleCaps)
	s.api("GET /api/symbols", s.handleSymbols)
	s.api("GET /api/function", s.handleFunction)
	s.api("GET /api/calls", s.handleCalls)
	s.api("GET /api/check", s.handleCheck)
	s.api("GET /api/experiments", s.handleExperiments)
	s.api("POST /api/experiments", s.handleStart)
	s.api("POST /api/experiments/{id}/stop", s.handleStop)
	s.api("GET /api/experiment-files", s.handleFiles)
	s.api("GET /api/experiment-file", s.handleLoad)
	s.api("POST /api/experiment-file", s.handleSave)
	s.api("GET /api/events", s.handleEvents)
	s.api("POST /api/hunts", s.handleHunt)
	s.api("GET /api/hunts", s.handleHunts)
	s.api("POST /api/hunts/{id}/stop", s.handleStopHunt)
	s.api("GET /api/runs", s.handleRuns)
	s.api("GET /api/runs/{name}/tree", s.handleRunTree)
	s.api("POST /api/runs/{name}/watch", s.handleWatch)
	s.api("GET /runs/{name}/{file}", s.handleRunFile)
}

// serveFlame serves the flame graph script report.html inlines.
func serveFlame(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	io.WriteString(w, flame.JS)
}

// api registers an API handler behind the token and origin checks.
func (s *Server) api(pattern string, h http.HandlerFunc) {
	s.mux.Handle(pattern, s.guard(h))
}

// ServeHTTP serves the page and the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, r)
}

// cookieName names the token's cookie after the port: cookies do not
// tell ports apart, and two servers may run at once.
func cookieName(r *http.Request) string {
	_, port, _ := net.SplitHostPort(r.Host)
	return "autoprof_token_" + port
}

// index serves the page to a request with the token in its cookie; the
// URL with the token sets the cookie and sends the browser to the page
// without it, so that the token stays out of the address bar and history.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query().Get("token"); q != "" && s.validToken(q) {
		http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !s.hasToken(r) {
		http.Error(w, "autoprof ui: open the URL that autoprof ui printed, with its token", http.StatusForbidden)
		return
	}
	page, _ := assets.ReadFile("assets/index.html")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(page)
}

func (s *Server) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// hasToken reports whether r carries the token in its header or cookie.
func (s *Server) hasToken(r *http.Request) bool {
	if h := r.Header.Get("X-Autoprof-Token"); h != "" {
		return s.validToken(h)
	}
	c, err := r.Cookie(cookieName(r))
	return err == nil && s.validToken(c.Value)
}

// guard refuses API requests without the token (401) and cross-site ones
// (403): an Origin other than the server's own, or a browser's
// Sec-Fetch-Site other than same-origin or none. A POST must say it
// carries JSON (415), which no plain HTML form can.
func (s *Server) guard(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			httpError(w, http.StatusForbidden, fmt.Errorf("cross-origin request from %s refused", o))
			return
		}
		if sf := r.Header.Get("Sec-Fetch-Site"); sf != "" && sf != "same-origin" && sf != "none" {
			httpError(w, http.StatusForbidden, fmt.Errorf("%s request refused", sf))
			return
		}
		if r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			httpError(w, http.StatusUnsupportedMediaType, errors.New("POST wants Content-Type application/json"))
			return
		}
		if !s.hasToken(r) {
			httpError(w, http.StatusUnauthorized, errors.New("no valid token: open the URL that autoprof ui printed"))
			return
		}
		h(w, r)
	})
}

// httpError writes {"error": ...} with status code.
func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// maxRequest bounds a request's JSON body.
const maxRequest = 1 << 20

// decodeRequest reads a request's JSON body into v, refusing fields v
// does not have, and answers 400 where it cannot: false then.
func decodeRequest(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("request: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
