package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/headless"
	"github.com/autoprof/autoprof/internal/headless/headlesstest"
	"github.com/autoprof/autoprof/internal/leakcheck"
	"github.com/autoprof/autoprof/reports"
	"github.com/autoprof/autoprof/search"
	"github.com/autoprof/autoprof/splice"
)

// update rewrites the screenshots in docs/ui (also AUTOPROF_UI_SCREENSHOTS=1).
var update = flag.Bool("update", false, "write the screenshots of docs/ui")

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }

// page is a headless Chromium on a server over the running kernel.
type page struct {
	headlesstest.Page
	s   *Server
	url string
}

// livePage serves the running kernel and opens the page in a headless
// Chromium; it skips where the test cannot run (not root, no tracepoint
// backend, no browser).
func livePage(t *testing.T, orphaned time.Duration) *page {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the live kernel's symbols and instruments need root")
	}
	featuretest.Require(t, features.HaveTracepoint())
	path, err := headless.Find()
	if err != nil {
		t.Skip(err)
	}
	s, err := New(Options{Dir: t.TempDir(), Orphaned: orphaned})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, l) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	b, err := headless.Start(ctx, path, 1400, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p := &page{Page: headlesstest.Page{T: t, B: b, Ctx: ctx}, s: s, url: s.URL(l.Addr())}
	if err := b.Navigate(ctx, p.url); err != nil {
		t.Fatal(err)
	}
	return p
}

// screenshot writes docs/ui/NAME.png when asked (-update or
// AUTOPROF_UI_SCREENSHOTS=1).
func (p *page) screenshot(name string) {
	p.T.Helper()
	if !*update && os.Getenv("AUTOPROF_UI_SCREENSHOTS") != "1" {
		return
	}
	png, err := p.B.Screenshot(p.Ctx)
	if err != nil {
		p.T.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui", name+".png"), png, 0o644); err != nil {
		p.T.Fatal(err)
	}
}

// TestBrowse drives the page through the symbol table (search, a group,
// each backend's verdict) and the function view (CFG, a block's attach
// dialog, the callees, a caller and a callee clicked through).
func TestBrowse(t *testing.T) {
	p := livePage(t, 0)
	p.Wait("symbol rows", `document.querySelectorAll('#symtab tbody tr').length > 0`, time.Minute)
	p.Set("#q", "sys_read")
	p.Wait("__x64_sys_read in the table", `document.querySelector('#symtab tr[data-spec="__x64_sys_read"]')`, 30*time.Second)
	p.screenshot("symbols")
	p.Set("#q", "getppid")
	row := `#symtab tr[data-spec="__x64_sys_getppid"]`
	p.Wait("the getppid row", `document.querySelector('`+row+`')`, 30*time.Second)
	var cells map[string]string
	p.Eval(`Object.fromEntries([...document.querySelectorAll('`+row+` td[data-backend]')].map(c => [c.dataset.backend, c.className + ' ' + (c.title || '')]))`, &cells)
	if !strings.Contains(cells["tracepoint"], "b-ok") {
		t.Errorf("tracepoint cell of __x64_sys_getppid %q; want it able to time the syscall", cells["tracepoint"])
	}
	for _, b := range []string{"fentry", "kprobe", "splice"} {
		err := features.Backend(b)
		if ok := strings.Contains(cells[b], "b-ok") || strings.Contains(cells[b], "b-unk"); ok != (err == nil) {
			t.Errorf("%s cell %q; caps says %v", b, cells[b], err)
		} else if err != nil && !strings.Contains(cells[b], "not supported") {
			t.Errorf("%s cell %q; want caps' reason", b, cells[b])
		}
	}
	p.Click(`#groups button[data-group="system calls"]`)
	p.Wait("only system calls", `document.querySelector('#groups button.active')?.dataset.group === 'system calls' && [...document.querySelectorAll('#symtab tbody tr td:nth-child(3)')].every(c => c.textContent === 'system calls')`, 30*time.Second)

	p.Set("#q", "vfs_read")
	p.Wait("vfs_read", `document.querySelector('#symtab tr[data-spec="vfs_read"]') || document.querySelector('#groups button.active')`, 30*time.Second)
	p.Click(`#groups button:first-child`)
	p.Wait("vfs_read", `document.querySelector('#symtab tr[data-spec="vfs_read"] a')`, 30*time.Second)
	p.Click(`#symtab tr[data-spec="vfs_read"] a`)
	p.Wait("vfs_read's CFG", `document.querySelector('#fn-name').textContent === 'vfs_read' && document.querySelectorAll('#cfg g.blk').length > 3 && document.querySelectorAll('#cfg path.e').length > 3`, time.Minute)
	var n struct{ Blocks, Calls int }
	p.Eval(`({Blocks: document.querySelectorAll('#cfg g.blk').length, Calls: document.querySelectorAll('#cfg text.call').length})`, &n)
	want, err := p.s.graph.Function("vfs_read")
	if err != nil {
		t.Fatal(err)
	}
	if n.Blocks != len(want.Blocks) {
		t.Errorf("CFG of vfs_read: %d blocks drawn, the listing has %d", n.Blocks, len(want.Blocks))
	}
	if n.Calls == 0 {
		t.Errorf("CFG of vfs_read: no callee to click")
	}
	p.screenshot("function")
	p.Click(`#cfg g.blk[data-start="` + strconv.Itoa(int(want.Blocks[1].Start)) + `"]`)
	block := fmt.Sprintf("vfs_read+%#x", want.Blocks[1].Start)
	p.Wait("the attach dialog for a block", fmt.Sprintf(`document.querySelector('#attach').open && document.querySelector('#at-point').value === %q && document.querySelector('#at-kind').value === 'entry'`, block), 10*time.Second)
	p.Wait("the tracepoint backend's refusal of a block", `document.querySelector('#at-verdicts div[data-backend="tracepoint"].b-no')`, 10*time.Second)
	p.Click(`#attach button[value="cancel"]`)
	p.Wait("the dialog closed", `!document.querySelector('#attach').open`, 10*time.Second)
	var callees []string
	p.Eval(`[...document.querySelectorAll('#fn-callees a')].map(a => a.textContent)`, &callees)
	if !slices.Contains(callees, "rw_verify_area") {
		t.Errorf("vfs_read's callees %q; want rw_verify_area among them", callees)
	}
	p.Click("#fn-callers-load")
	p.Wait("vfs_read's callers", `[...document.querySelectorAll('#fn-callers a')].some(a => a.textContent === 'ksys_read')`, 2*time.Minute)
	p.Eval(`(() => { [...document.querySelectorAll('#fn-callers a')].find(a => a.textContent === 'ksys_read').click(); return true })()`, nil)
	p.Wait("the caller's view", `document.querySelector('#fn-name').textContent === 'ksys_read' && document.querySelectorAll('#cfg g.blk').length > 0`, time.Minute)
	var callee string
	p.Eval(`document.querySelector('#cfg text.call').dataset.target`, &callee)
	p.Click(`#cfg text.call`)
	p.Wait("the callee's view", fmt.Sprintf(`document.querySelector('#fn-name').textContent === %q && document.querySelectorAll('#cfg g.blk').length > 0`, callee), time.Minute)
	p.NoErrors()
}

// getppids calls getppid until stop is closed and counts the calls.
func getppids(stop <-chan struct{}, n *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		syscall.Getppid()
		n.Add(1)
		time.Sleep(20 * time.Microsecond)
	}
}

// TestExperiment attaches a syscall timer from the function view and
// types another with its own launch and splashdown, runs them on this
// process while it calls getppid, sees live numbers, the second launched
// on time and the timeline, stops it and finds nothing left in the
// kernel; the outputs are probe's, and the saved file is one probe
// --experiment reads.
func TestExperiment(t *testing.T) {
	p := livePage(t, 0)
	p.Wait("symbol rows", `document.querySelectorAll('#symtab tbody tr').length > 0`, time.Minute)
	p.Set("#q", "__x64_sys_getppid")
	p.Wait("the getppid row", `document.querySelector('#symtab tr[data-spec="__x64_sys_getppid"] a')`, 30*time.Second)
	p.Click(`#symtab tr[data-spec="__x64_sys_getppid"] a`)
	p.Wait("getppid's CFG", `document.querySelector('#fn-name').textContent === '__x64_sys_getppid' && document.querySelectorAll('#cfg g.blk').length > 0`, time.Minute)
	p.Click("#fn-attach")
	p.Wait("the attach dialog", `document.querySelector('#attach').open`, 10*time.Second)
	p.Set("#at-kind", "timer")
	p.Set("#at-backend", "tracepoint")
	p.Set("#at-target", "pids")
	p.Set("#at-target-value", strconv.Itoa(os.Getpid()))
	p.Wait("the tracepoint backend's yes", `document.querySelector('#at-verdicts div[data-backend="tracepoint"].b-ok')`, 10*time.Second)
	p.screenshot("attach")
	p.Click("#at-add")
	p.Wait("the instrument in the plan", `[...document.querySelectorAll('#plan tbody td.fn')].some(c => c.textContent === '__x64_sys_getppid:timer')`, 10*time.Second)
	var form []string
	p.Eval(`['#exp-backend', '#exp-target', '#exp-target-value'].map(s => document.querySelector(s).value)`, &form)
	if want := []string{"tracepoint", "pids", strconv.Itoa(os.Getpid())}; !slices.Equal(form, want) {
		t.Errorf("the experiment's backend and target %q after the dialog; want %q", form, want)
	}
	p.Set("#plan-spec", "__x64_sys_getpgrp:timer")
	p.Click("#plan-add")
	p.Set("#plan tbody tr:nth-child(2) td:nth-child(2) input", "1s")
	p.Set("#plan tbody tr:nth-child(2) td:nth-child(3) input", "2s")
	p.Set("#exp-name", "getppid")
	p.Set("#exp-interval", "500ms")
	p.Set("#exp-out", "run1")

	stop := make(chan struct{})
	var calls atomic.Int64
	go getppids(stop, &calls)
	defer close(stop)
	before := leakcheck.Take() // the page's placement session is open by now
	p.Click("#exp-start")
	live := `#experiments .exp[data-state="running"] tr[data-instrument="__x64_sys_getppid:timer"]`
	p.Wait("live calls", `Number(document.querySelector('`+live+` td.calls')?.textContent) > 0 && Number(document.querySelector('`+live+` td.cps')?.textContent) > 0`, time.Minute)
	p.Wait("a second reading", `document.querySelector('`+live+` svg.spark polyline')?.getAttribute('points').split(' ').length >= 2`, 30*time.Second)
	p.Wait("getpgrp launched at 1s", `document.querySelector('#experiments .exp[data-state="running"] tr[data-instrument="__x64_sys_getpgrp:timer"]')`, 30*time.Second)
	var bars int
	p.Eval(`document.querySelectorAll('#experiments .exp[data-state="running"] svg.timeline rect.bar').length`, &bars)
	if bars != 2 {
		t.Errorf("the timeline has %d bars, want one per instrument", bars)
	}
	var overhead string
	p.Eval(`document.querySelector('#experiments .exp[data-state="running"] .overhead')?.textContent || ''`, &overhead)
	t.Logf("overhead shown: %q", overhead) // absent where the kernel refuses BPF run-time statistics
	p.screenshot("experiment")
	if n := len(before.Leaks(leakcheck.Take())); n == 0 {
		t.Errorf("no kernel object added while the timer runs: is it attached?")
	}
	p.Click(`#experiments .exp[data-state="running"] button.stop`)
	p.Wait("the experiment stopped", `document.querySelector('#experiments .exp[data-state="stopped"]')`, 30*time.Second)
	if leaks := before.Settled(); len(leaks) > 0 {
		t.Errorf("left in the kernel after Stop: %q", leaks)
	}
	var total float64
	p.Eval(`Number(document.querySelector('#experiments .exp[data-state="stopped"] tr[data-instrument="__x64_sys_getppid:timer"] td.calls').textContent)`, &total)
	if total <= 0 || total > float64(calls.Load()) {
		t.Errorf("%v calls in the totals; this process made %d", total, calls.Load())
	}
	checkSeries(t, filepath.Join(p.s.dir, "run1"))
	p.Wait("the idle timer's warning", `[...document.querySelectorAll('#experiments .exp[data-state="stopped"] .warning')].some(w => w.textContent.includes('__x64_sys_getpgrp:timer counted no call'))`, 10*time.Second)

	p.Set("#file-name", "getppid.json")
	p.Click("#file-save")
	p.Wait("the saved file listed", `[...document.querySelectorAll('#file-list option')].some(o => o.value === 'getppid.json')`, 10*time.Second)
	data, err := os.ReadFile(filepath.Join(p.s.dir, "getppid.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, plan, err := splice.ParseExperiment(data)
	if err != nil {
		t.Fatalf("the saved file: %v", err)
	}
	if len(plan) != 2 || plan[0].Spec.String() != "__x64_sys_getppid:timer" || len(e.Target.PIDs) != 1 || e.Target.PIDs[0] != os.Getpid() || time.Duration(e.Interval) != 500*time.Millisecond ||
		plan[1].Spec.String() != "__x64_sys_getpgrp:timer" || plan[1].Launch != time.Second || plan[1].Splashdown != 2*time.Second {
		t.Errorf("the saved file %s; want the getppid timer, and getpgrp's from 1s to 2s, on this pid every 500ms", data)
	}
	p.Eval(`(() => { state.plan = []; drawPlan(); return true })()`, nil)
	p.Set("#file-list", "getppid.json")
	p.Click("#file-load")
	p.Wait("the loaded plan", `[...document.querySelectorAll('#plan tbody td.fn')].some(c => c.textContent === '__x64_sys_getppid:timer') && document.querySelector('#exp-target').value === 'pids'`, 10*time.Second)
	p.NoErrors()
}

// checkSeries checks the outputs of a run in dir: probe -o's series with
// getppid's calls and its summary.
func checkSeries(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, splice.SeriesFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var records int
	var calls uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r splice.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", splice.SeriesFile, err)
		}
		if r.Instrument == "__x64_sys_getppid:timer" {
			records++
			calls += r.Calls
		}
	}
	if records < 2 || calls == 0 {
		t.Errorf("%s: %d records of getppid with %d calls; want one per interval, calls counted", splice.SeriesFile, records, calls)
	}
	var sum splice.RunSummary
	data, err := os.ReadFile(filepath.Join(dir, splice.SummaryFile))
	if err == nil {
		err = json.Unmarshal(data, &sum)
	}
	i := slices.IndexFunc(sum.Instruments, func(s splice.Summary) bool { return s.Instrument == "__x64_sys_getppid:timer" })
	if err != nil || i < 0 || sum.Instruments[i].Calls != calls {
		t.Errorf("%s: %v, %+v; want the getppid timer's %d calls", splice.SummaryFile, err, sum.Instruments, calls)
	}
	if want := []string{"__x64_sys_getpgrp:timer counted no call all through the run"}; !slices.Equal(sum.Warnings, want) {
		t.Errorf("%s: warnings %q, want %q as probe says", splice.SummaryFile, sum.Warnings, want)
	}
}

// TestPageClosed checks that closing the page withdraws the experiments it
// left running, once no page has listened for Options.Orphaned.
func TestPageClosed(t *testing.T) {
	p := livePage(t, time.Second)
	p.Wait("the placement session", `document.querySelectorAll('#symtab tbody tr').length > 0`, time.Minute)
	before := leakcheck.Take()
	p.Eval(`(async () => { await api('/api/experiments', {body: {backend: 'tracepoint', experiment: {interval: '200ms', instruments: [{spec: '__x64_sys_getppid:timer'}]}}}); return true })()`, nil)
	p.Wait("the running experiment", `document.querySelector('#experiments .exp[data-state="running"]')`, 30*time.Second)
	if err := p.B.Navigate(p.Ctx, "about:blank"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := p.s.exps.views()
		if len(v) == 1 && v[0].State == "stopped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("experiments %+v 20 s after the page closed; want it stopped", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leaks := before.Settled(); len(leaks) > 0 {
		t.Errorf("left in the kernel after the page closed: %q", leaks)
	}
}

// checkTree checks the hunt's growing tree: the tree after the last
// round has more nodes than after the first; the page drew a tree of one
// of the rounds first and the last one it drew, the finished run's, has
// more nodes; the rounds say how many nodes the tree had after each
// and how many decisions were taken (the page's timeline draws them all);
// the flame graph draws boxes, the timeline one mark per decision.
func checkTree(t *testing.T, p *page) {
	t.Helper()
	var got struct {
		Sizes           []int
		Boxes, Marks    int
		Rounds, Decided []int
		Trace           int
	}
	p.Eval(`(function(){const id=Math.max(...Object.keys(state.hunts).map(Number)); const h=state.hunts[id];
		const card=document.getElementById('hunt-'+id);
		return {Sizes: state.treeSizes[id], Boxes: card.querySelectorAll('.flame-box svg g').length,
			Marks: card.querySelectorAll('.timeline-box svg circle').length,
			Rounds: h.rounds.map(r => r.nodes), Decided: h.rounds.map(r => r.events), Trace: h.tree.trace.length};})()`, &got)
	t.Logf("tree sizes as drawn %v, per round %v, decisions per round %v", got.Sizes, got.Rounds, got.Decided)
	if len(got.Sizes) < 2 || got.Sizes[len(got.Sizes)-1] <= got.Sizes[0] {
		t.Errorf("the tree did not grow: %v nodes as drawn", got.Sizes)
	}
	if len(got.Rounds) < 2 || got.Rounds[0] == 0 || got.Rounds[len(got.Rounds)-1] <= got.Rounds[0] || !slices.Contains(got.Rounds, got.Sizes[0]) {
		t.Errorf("trees drawn %v, rounds' trees %v: want the first drawn one of them, and more nodes after the last round than after the first", got.Sizes, got.Rounds)
	}
	if got.Boxes == 0 || got.Marks != got.Trace || got.Trace == 0 {
		t.Errorf("%d boxes, %d marks for %d decisions", got.Boxes, got.Marks, got.Trace)
	}
}

// TestHunt starts a hunt from the page on this process while it calls
// getppid: rounds appear as they end, the hunt ends at its duration with
// the outputs autoprof hunt writes (reports.WriteWith), served to the
// page, and is listed among the saved runs; nothing stays in the kernel.
func TestHunt(t *testing.T) {
	p := livePage(t, 0)
	p.Wait("symbol rows", `document.querySelectorAll('#symtab tbody tr').length > 0`, time.Minute)
	p.Click("#tab-hunt")
	p.Set("#hunt-backend", "tracepoint")
	p.Set("#hunt-target", "pids")
	p.Set("#hunt-target-value", strconv.Itoa(os.Getpid()))
	// Short rounds: the first one's samples must leave the sampled tree
	// room to grow, on a loaded machine too.
	p.Set("#hunt-duration", "5s")
	p.Set("#hunt-round", "250ms")
	p.Set("#hunt-budget", "50")
	p.Set("#hunt-out", "hunt1")
	stop := make(chan struct{})
	var calls atomic.Int64
	go getppids(stop, &calls)
	defer close(stop)
	before := leakcheck.Take()
	p.Click("#hunt-start")
	p.Wait("a round", `document.querySelectorAll('#hunts .hunt[data-state="running"] table.rounds tbody tr').length >= 2`, time.Minute)
	p.Wait("a tree", `document.querySelectorAll('#hunts .hunt .flame-box svg g').length > 0`, time.Minute)
	p.Wait("the hunt's end", `document.querySelector('#hunts .hunt[data-state="done"] .files a')`, time.Minute)
	p.screenshot("hunt")
	checkTree(t, p)
	if leaks := before.Settled(); len(leaks) > 0 {
		t.Errorf("left in the kernel after the hunt: %q", leaks)
	}
	var status int
	p.Eval(`(async () => (await fetch('/runs/hunt1/report.html')).status)()`, &status)
	if status != 200 {
		t.Errorf("report.html through /runs/: status %d", status)
	}
	p.Wait("the saved run listed", `document.querySelector('#runs li[data-run="hunt1"] a')`, 10*time.Second)
	run, err := reports.Load(filepath.Join(p.s.dir, "hunt1"))
	if err != nil {
		t.Fatal(err)
	}
	// The saved run's flame graph: all of run.json's nodes, one
	// timeline mark per decision.
	p.Click(`#runs li[data-run="hunt1"] button.run-tree`)
	p.Wait("the saved run's tree", `document.querySelectorAll('#runs li[data-run="hunt1"] .flame-box svg g').length > 0`, 10*time.Second)
	var saved struct{ Nodes, Marks int }
	p.Eval(`(function(){const li=document.querySelector('#runs li[data-run="hunt1"]');
		return {Nodes: +li.querySelector('.flame-box').dataset.nodes, Marks: li.querySelectorAll('.timeline-box svg circle').length};})()`, &saved)
	if saved.Nodes != len(run.Nodes) || saved.Marks != len(run.Trace) {
		t.Errorf("saved run's view: %d nodes, %d marks; run.json has %d nodes, %d decisions", saved.Nodes, saved.Marks, len(run.Nodes), len(run.Trace))
	}
	// This process's time goes mostly to its idle threads' waits: the
	// findings are whatever they are, but there are some, and
	// findings.json says the same as run.json.
	var sum reports.Summary
	data, err := os.ReadFile(filepath.Join(p.s.dir, "hunt1", reports.FindingsFile))
	if err == nil {
		err = json.Unmarshal(data, &sum)
	}
	if err != nil || len(run.Findings) == 0 || len(sum.Findings) != len(run.Findings) {
		t.Errorf("%s: %v, %d findings; run.json has %d", reports.FindingsFile, err, len(sum.Findings), len(run.Findings))
	}
	p.NoErrors()
}

// TestWatchInPage follows from the page a hunt that another process runs
// (its live file, as autoprof hunt writes it): the runs list offers to
// watch it, its card says what it watches and grows with the file's
// rounds and tree, and it ends done with the outputs written beside it.
func TestWatchInPage(t *testing.T) {
	p := livePage(t, 0)
	p.Wait("symbol rows", `document.querySelectorAll('#symtab tbody tr').length > 0`, time.Minute)
	p.Click("#tab-hunt")
	dir := filepath.Join(p.s.dir, "cli")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	writeLive(t, dir, os.Getpid(), started, 1)
	p.Click("#runs-reload")
	p.Wait("the hunt under way listed", `document.querySelector('#runs li[data-run="cli"] button.run-watch')`, 10*time.Second)
	p.Click(`#runs li[data-run="cli"] button.run-watch`)
	p.Wait("the watched hunt's card", `[...document.querySelectorAll('#hunts .hunt[data-state="running"]')].some(c => c.innerText.includes('watching autoprof hunt -o cli') && c.querySelector('button.stop').innerText === 'Stop watching')`, 10*time.Second)
	p.Wait("its tree", `document.querySelectorAll('#hunts .hunt .flame-box svg g').length > 0`, 10*time.Second)
	writeLive(t, dir, os.Getpid(), started, 2)
	p.Wait("round 2", `document.querySelectorAll('#hunts .hunt[data-state="running"] table.rounds tbody tr').length === 2`, 10*time.Second)
	p.screenshot("watch")
	run := &search.Run{Meta: search.Meta{Start: started.Add(time.Second), End: time.Now(), Rounds: 2, StopReason: "converged", Confidence: 0.95, Threshold: 5}, Nodes: watchNodes(2)}
	if err := reports.Write(dir, run); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, reports.LiveFile)); err != nil {
		t.Fatal(err)
	}
	p.Wait("the watched hunt's end", `document.querySelector('#hunts .hunt[data-state="done"] .files a[href="/runs/cli/run.json"]')`, 10*time.Second)
	p.Wait("the run listed as saved", `document.querySelector('#runs li[data-run="cli"] button.run-tree') && !document.querySelector('#runs li[data-run="cli"] button.run-watch')`, 10*time.Second)
	p.NoErrors()
}
