// Package headless drives a headless Chromium over the DevTools protocol on
// a pipe (--remote-debugging-pipe: commands on fd 3, replies and events on
// fd 4, each message JSON ended by a NUL byte), so that tests can open a
// page, collect its console errors and uncaught exceptions, evaluate
// script in it and take a screenshot, with no network and no library.
package headless

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Chromium is where Debian's chromium package puts the browser.
const Chromium = "/usr/bin/chromium"

// ErrNoChromium is returned by Find when the browser is not installed.
var ErrNoChromium = errors.New(Chromium + " is not installed (Debian package chromium; scripts/deps.sh installs it)")

// Find returns the browser's path, or ErrNoChromium.
func Find() (string, error) {
	if _, err := os.Stat(Chromium); err != nil {
		return "", ErrNoChromium
	}
	return Chromium, nil
}

// Browser is a running headless Chromium with one page.
type Browser struct {
	cmd     *exec.Cmd
	in      *os.File // our end of the browser's fd 3
	out     *os.File // our end of the browser's fd 4
	session string
	dataDir string

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan message
	events  chan message
	errs    []string
	done    chan struct{}
	stderr  lockedBuffer // written by exec's copying goroutine
	closed  bool
}

// lockedBuffer is a strings.Builder that one goroutine may write while
// another reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type message struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct{ Message string }
	SessionID string `json:"sessionId,omitempty"`
}

// Start runs the browser at path headless, with a fresh profile directory,
// no sandbox (tests run as root), no GPU and none of its background network
// traffic, and opens an empty page of the given size.
func Start(ctx context.Context, path string, width, height int) (*Browser, error) {
	dataDir, err := os.MkdirTemp("", "autoprof-chromium-")
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	b := &Browser{dataDir: dataDir, waiting: map[int]chan message{}, events: make(chan message, 1024), done: make(chan struct{})}
	var pipes [4]*os.File // the browser's ends, then ours
	ok := false
	defer func() {
		for _, f := range pipes[:2] {
			f.Close() // the browser holds its own copies once started
		}
		if !ok {
			for _, f := range pipes[2:] {
				f.Close()
			}
			os.RemoveAll(dataDir)
		}
	}()
	if pipes[0], pipes[2], err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	if pipes[3], pipes[1], err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	b.cmd = exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--remote-debugging-pipe", "--user-data-dir="+dataDir, fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	b.cmd.ExtraFiles = pipes[:2]
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	ok = true
	b.in, b.out = pipes[2], pipes[3]
	go b.read()
	if err := b.attach(ctx, width, height); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// attach opens a page target and enables the domains whose events report
// errors.
func (b *Browser) attach(ctx context.Context, width, height int) error {
	var created struct{ TargetID string }
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &created); err != nil {
		return err
	}
	var attached struct{ SessionID string }
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached); err != nil {
		return err
	}
	b.session = attached.SessionID
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := b.call(ctx, b.session, m, nil, nil); err != nil {
			return err
		}
	}
	return b.call(ctx, b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// read dispatches the browser's messages: replies to their callers, events
// to the events channel, errors to the error list.
func (b *Browser) read() {
	defer close(b.done)
	r := bufio.NewReader(b.out)
	for {
		raw, err := r.ReadBytes(0)
		if err != nil {
			return
		}
		var m message
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.waiting[m.ID]
			delete(b.waiting, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		b.noteError(m)
		select {
		case b.events <- m:
		default:
		}
	}
}

// noteError records uncaught exceptions, console.error/assert calls and
// error log entries (failed loads, CSP and security errors).
func (b *Browser) noteError(m message) {
	var text string
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		json.Unmarshal(m.Params, &p)
		text = "exception: " + p.ExceptionDetails.Text + " " + p.ExceptionDetails.Exception.Description
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		json.Unmarshal(m.Params, &p)
		if p.Type != "error" && p.Type != "assert" {
			return
		}
		var parts []string
		for _, a := range p.Args {
			parts = append(parts, fmt.Sprint(a.Value, a.Description))
		}
		text = "console." + p.Type + ": " + strings.Join(parts, " ")
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Source, Text, URL string }
		}
		json.Unmarshal(m.Params, &p)
		if p.Entry.Level != "error" {
			return
		}
		text = "log " + p.Entry.Source + ": " + p.Entry.Text + " " + p.Entry.URL
	default:
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, strings.TrimSpace(text))
	b.mu.Unlock()
}

// call sends a command and decodes its result into result (if not nil).
func (b *Browser) call(ctx context.Context, session, method string, params any, result any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan message, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("devtools %s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("devtools %s: %s", method, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("devtools %s: browser exited: %s", method, lastLine(b.stderr.String()))
	case <-ctx.Done():
		return fmt.Errorf("devtools %s: %w", method, ctx.Err())
	}
}

// Navigate loads url and waits for its load event.
func (b *Browser) Navigate(ctx context.Context, url string) error {
	for len(b.events) > 0 {
		<-b.events
	}
	var nav struct{ ErrorText string }
	if err := b.call(ctx, b.session, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return err
	}
	if nav.ErrorText != "" {
		return fmt.Errorf("loading %s: %s", url, nav.ErrorText)
	}
	for {
		select {
		case m := <-b.events:
			if m.Method == "Page.loadEventFired" {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("loading %s: %w", url, ctx.Err())
		case <-time.After(30 * time.Second):
			return fmt.Errorf("loading %s: no load event in 30s", url)
		}
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value
// (which must be JSON-serialisable) into out. A promise is awaited: the
// value is what it resolves to.
func (b *Browser) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct{ Text string }
	}
	if err := b.call(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("evaluating %q: %s", expr, r.ExceptionDetails.Text)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Screenshot returns a PNG of the whole page, beyond the viewport.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct{ Data string }
	if err := b.call(ctx, b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// Errors returns the page's errors so far: uncaught exceptions, console
// errors and error log entries.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// Close ends the browser and removes its profile directory. A second
// call returns os.ErrClosed.
func (b *Browser) Close() error {
	if b.closed {
		return os.ErrClosed
	}
	b.closed = true
	if b.in != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		b.in.Close()
	}
	waited := make(chan error, 1)
	go func() { waited <- b.cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-waited
	}
	if b.out != nil {
		b.out.Close()
	}
	return os.RemoveAll(b.dataDir)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
