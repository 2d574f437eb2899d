// Package headlesstest drives a page in a headless Chromium from a test:
// evaluate, wait for a condition, click, set a field, check for errors.
package headlesstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/headless"
)

// Page is the browser's page, seen from test T; every call fails the test
// on an error.
type Page struct {
	T   testing.TB
	B   *headless.Browser
	Ctx context.Context
}

// Eval evaluates expr in the page into out.
func (p *Page) Eval(expr string, out any) {
	p.T.Helper()
	if err := p.B.Eval(p.Ctx, expr, out); err != nil {
		p.T.Fatal(err)
	}
}

// Wait polls the boolean expression cond until it holds, failing the test
// with what the page shows after within.
func (p *Page) Wait(what, cond string, within time.Duration) {
	p.T.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		if err := p.B.Eval(p.Ctx, "!!("+cond+")", &ok); err != nil {
			p.T.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			p.B.Eval(p.Ctx, "document.querySelector('main').innerText.slice(0, 2000)", &state)
			p.T.Fatalf("no %s in %v (page errors %q); the page shows:\n%s", what, within, p.B.Errors(), state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Click clicks the first element sel selects (HTML or SVG).
func (p *Page) Click(sel string) {
	p.T.Helper()
	p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) throw new Error('no element ' + %q); e.dispatchEvent(new MouseEvent('click', {bubbles: true})); return true })()`, sel, sel), nil)
}

// Set sets an input's or select's value and fires its input and change
// events.
func (p *Page) Set(sel, value string) {
	p.T.Helper()
	p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); return true })()`, sel, value), nil)
}

// NoErrors fails the test on the page's console errors and exceptions.
func (p *Page) NoErrors() {
	p.T.Helper()
	if errs := p.B.Errors(); len(errs) > 0 {
		p.T.Errorf("page errors: %q", errs)
	}
}
