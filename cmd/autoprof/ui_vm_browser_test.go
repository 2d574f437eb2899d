//go:build vmhost

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/headless"
	"github.com/autoprof/autoprof/internal/headless/headlesstest"
	"github.com/autoprof/autoprof/internal/testenv"
	"github.com/autoprof/autoprof/internal/vmtest"
)

// guestBuild builds, once, the guest's init and this package's VM tests
// (TestVMUIBrowserGuest among them), both static.
var guestBuild = sync.OnceValues(func() (dir string, err error) {
	dir, err = os.MkdirTemp("", "autoprof-ui-browser-")
	if err != nil {
		return "", err
	}
	for _, build := range [][]string{
		{"build", "-o", filepath.Join(dir, "init"), "../../internal/vmtest/cmd/vmtest"},
		{"test", "-c", "-tags", "vm", "-o", filepath.Join(dir, "autoprof.test"), "."},
	} {
		cmd := exec.Command("go", build...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", errors.New(string(out))
		}
	}
	return dir, nil
})

// TestUIBrowserVM is issue 18's check with the browser on the host: each
// kernel boots with the GUI's port (8080 in the guest) forwarded to one of
// the host's loopback, and a headless Chromium here drives the page: the
// function view of __x64_sys_pread64, a timer attached by clicking its
// entry block in the CFG and block counters by clicking two more, on the
// pread helper the guest started, an experiment started from the page.
// The guest (TestVMUIBrowserGuest) lets the helper make its preads once
// every instrument is live; the page must then show the timer's calls as
// exactly that many, each block 0 or that many, and the guest checks that
// probe counts the same specs exactly as the page's experiment did. The
// page saves the experiment last, and the guest checks the file.
func TestUIBrowserVM(t *testing.T) {
	chromium, err := headless.Find()
	if err != nil {
		t.Fatal(err) // scripts/deps.sh installs it
	}
	dir, err := guestBuild()
	if err != nil {
		t.Fatalf("building the guest's binaries: %v", err)
	}
	for _, series := range strings.Split(envOr("KERNELS", "6.1,6.12"), ",") {
		t.Run(series, func(t *testing.T) {
			t.Parallel()
			browseInVM(t, chromium, dir, series)
		})
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// guestLine is what the guest's half says on its output.
var guestLine = regexp.MustCompile(`ui-browser: token=(\S+) pid=(\d+)`)

func browseInVM(t *testing.T, chromium, dir, series string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k := testenv.DebianKernel(t, ctx, series)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	pr, pw := io.Pipe()
	output := &guestLog{}
	cfg := vmtest.Config{Kernel: k, Init: filepath.Join(dir, "init"), Output: pw, Timeout: 12 * time.Minute,
		Forward: []vmtest.Forward{{Host: port, Guest: 8080}}}
	if err := cfg.ForBinary(filepath.Join(dir, "autoprof.test"), []string{"-test.v", "-test.run=^TestVMUIBrowserGuest$"}, "."); err != nil {
		t.Fatal(err)
	}
	cfg.Guest.Env = append(cfg.Guest.Env, uiBrowserEnv+"=1")
	ran := make(chan error, 1)
	go func() {
		_, err := vmtest.Run(ctx, cfg)
		pw.Close()
		ran <- err
	}()
	ready := make(chan []string, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			output.add(line)
			if m := guestLine.FindStringSubmatch(line); m != nil {
				ready <- m[1:]
			}
			select {
			case lines <- line:
			default:
			}
		}
		close(lines)
	}()
	var token, pid string
	select {
	case m := <-ready:
		token, pid = m[0], m[1]
	case err := <-ran:
		t.Fatalf("the guest ended before serving the page: %v\n%s", err, output.String())
	}
	b, err := headless.Start(ctx, chromium, 1400, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := &headlesstest.Page{T: t, B: b, Ctx: ctx}
	if err := b.Navigate(ctx, fmt.Sprintf("http://127.0.0.1:%d/?token=%s", port, token)); err != nil {
		t.Fatal(err)
	}
	const fn = "__x64_sys_pread64"
	p.Wait("symbol rows", `document.querySelectorAll('#symtab tbody tr').length > 0`, 3*time.Minute)
	p.Set("#q", fn)
	row := `#symtab tr[data-spec="` + fn + `"] a`
	p.Wait("the pread64 row", `document.querySelector('`+row+`')`, time.Minute)
	p.Click(row)
	p.Wait("pread64's CFG", `document.querySelector('#fn-name').textContent === '`+fn+`' && document.querySelectorAll('#cfg g.blk').length > 2`, 2*time.Minute)
	var starts []string
	p.Eval(`[...document.querySelectorAll('#cfg g.blk')].map(g => g.dataset.start)`, &starts)

	// The entry block's dialog, as a timer; then entry counters of the
	// first two blocks past it that kprobe takes.
	attach := func(start, kind string) bool {
		n, _ := strconv.Atoi(start)
		point := fn
		if n != 0 {
			point = fmt.Sprintf("%s+%#x", fn, n)
		}
		spec := point + ":" + kind
		p.Click(`#cfg g.blk[data-start="` + start + `"]`)
		p.Wait("the attach dialog for "+point, fmt.Sprintf(`document.querySelector('#attach').open && document.querySelector('#at-point').value === %q`, point), 30*time.Second)
		p.Set("#at-kind", kind)
		p.Set("#at-backend", "kprobe")
		p.Set("#at-target", "pids")
		p.Set("#at-target-value", pid)
		verdict := fmt.Sprintf(`#at-verdicts[data-spec=%q] div[data-backend="kprobe"]`, spec)
		p.Wait("kprobe's verdict on "+spec, `document.querySelector('`+verdict+`.b-ok, `+verdict+`.b-no')`, time.Minute)
		var ok bool
		p.Eval(`!!document.querySelector('`+verdict+`.b-ok')`, &ok)
		if !ok {
			p.Click(`#attach button[value="cancel"]`)
			return false
		}
		p.Click("#at-add")
		p.Wait("the dialog closed", `!document.querySelector('#attach').open`, 30*time.Second)
		return true
	}
	if !attach("0", "timer") {
		t.Fatalf("kprobe refuses a timer on %s", fn)
	}
	blocks := 0
	seen := map[string]bool{"0": true}
	for _, s := range starts {
		if !seen[s] && blocks < 2 && attach(s, "entry") {
			blocks++
		}
		seen[s] = true
	}
	if blocks == 0 {
		t.Fatalf("kprobe takes no block of %s past its entry (blocks at %v)", fn, starts)
	}
	var plan []string
	p.Eval(`[...document.querySelectorAll('#plan tbody td.fn')].map(c => c.textContent)`, &plan)
	t.Logf("%s: blocks drawn at %v; the plan from the CFG: %q", series, starts, plan)
	p.Set("#exp-interval", "200ms")
	p.Click("#exp-start")
	p.Wait("the experiment running", `document.querySelector('#experiments .exp[data-state="running"]')`, time.Minute)
	waitLine(t, lines, "ui-browser: preads done", 5*time.Minute, output)
	stopped := `#experiments .exp[data-state="done"]`
	p.Wait("the experiment done once its target exited", `document.querySelector('`+stopped+`')`, 3*time.Minute)
	var calls map[string]float64
	p.Eval(`Object.fromEntries([...document.querySelectorAll('`+stopped+` tr[data-instrument]')].map(r => [r.dataset.instrument, Number(r.querySelector('td.calls').textContent)]))`, &calls)
	t.Logf("%s: the page's totals %v", series, calls)
	if len(calls) != len(plan) {
		t.Errorf("%d rows of totals for a plan of %d", len(calls), len(plan))
	}
	for spec, n := range calls {
		switch {
		case strings.HasSuffix(spec, ":timer") && n != uiPreads:
			t.Errorf("%s: the page shows %v calls, want %d", spec, n, uiPreads)
		case n != 0 && n != uiPreads:
			t.Errorf("%s: the page shows %v, want 0 or %d (a block runs once a pread or never)", spec, n, uiPreads)
		}
	}
	p.Set("#file-name", "browser.json")
	p.Click("#file-save")
	p.Wait("the saved file listed", `[...document.querySelectorAll('#file-list option')].some(o => o.value === 'browser.json')`, time.Minute)
	p.NoErrors()
	if err := <-ran; err != nil {
		t.Fatalf("the guest's half: %v\n%s", err, output.String())
	}
	for _, line := range strings.Split(output.String(), "\n") {
		if strings.Contains(line, "ui-browser: compared with probe") {
			t.Logf("%s: %s", series, line)
			return
		}
	}
	t.Errorf("the guest did not compare with probe:\n%s", output.String())
}

// guestLog is the guest's output so far, for the messages of a failure.
type guestLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (g *guestLog) add(line string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.b.WriteString(line + "\n")
}

func (g *guestLog) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.b.String()
}

// waitLine waits for the guest to print want.
func waitLine(t *testing.T, lines <-chan string, want string, within time.Duration, output *guestLog) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the guest ended before %q:\n%s", want, output.String())
			}
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from the guest in %v:\n%s", want, within, output.String())
		}
	}
}
