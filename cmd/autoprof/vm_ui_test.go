//go:build vm

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/ui"
	"github.com/autoprof/autoprof/splice"
)

// TestVMUIBlockCounters is issue 18's check in the VM: instruments picked
// from the control-flow graph that the GUI draws (/api/function's blocks
// of __x64_sys_pread64: the entry's timer and block counters, as a click
// on a block attaches them) run as an experiment started through the
// GUI's API on a helper that makes exactly uiPreads preads and nothing
// else pread does. The truth is the helper's loop: the entry counts
// uiPreads calls, every block 0 or uiPreads (pread64 has no loop), some
// block past the entry uiPreads. autoprof probe, given the same specs on
// the same helper, must count the same.
func TestVMUIBlockCounters(t *testing.T) {
	featuretest.Require(t, features.HaveKprobe())
	call := startUI(t)

	// The blocks as the GUI draws them, and the spec a click attaches.
	const fn = "__x64_sys_pread64"
	var listing struct {
		Spec   string `json:"spec"`
		Blocks []struct {
			Start uint32 `json:"start"`
		} `json:"blocks"`
	}
	call("GET", "/api/function?name="+url.QueryEscape(fn), nil, &listing)
	var specs, refused []string
	for _, b := range listing.Blocks {
		spec := fmt.Sprintf("%s+%#x:entry", listing.Spec, b.Start)
		if b.Start == 0 {
			spec = listing.Spec + ":timer"
		}
		var verdict struct {
			Backends map[string]string `json:"backends"`
		}
		call("GET", "/api/check?spec="+url.QueryEscape(spec), nil, &verdict)
		if why := verdict.Backends["kprobe"]; why != "" {
			refused = append(refused, why)
		} else if len(specs) < 8 {
			specs = append(specs, spec)
		}
	}
	if len(specs) < 3 || !strings.HasSuffix(specs[0], ":timer") {
		t.Fatalf("%s: %d blocks, kprobe takes %q: want the entry and two blocks more; refused: %q", fn, len(listing.Blocks), specs, refused)
	}

	// Through the GUI: the experiment targets the helper, which starts
	// its preads once the instruments are live.
	viaUI := callsBySpec(uiPreadExperiment(t, call, specs))

	// Through probe: the same specs, the same helper's work.
	viaProbe := probePreads(t, fn, specs)

	t.Logf("%d preads; GUI %v; probe %v", uiPreads, viaUI, viaProbe)
	past := 0
	for i, s := range specs {
		ui, pr := viaUI[s], viaProbe[s]
		if ui != pr {
			t.Errorf("%s: the GUI's experiment counted %d, probe %d", s, ui, pr)
		}
		switch {
		case i == 0 && ui != uiPreads:
			t.Errorf("%s: %d calls, want %d", s, ui, uiPreads)
		case ui != 0 && ui != uiPreads:
			t.Errorf("%s: %d, want 0 or %d (the block runs once a pread or never)", s, ui, uiPreads)
		case i > 0 && ui == uiPreads:
			past++
		}
	}
	if past == 0 {
		t.Errorf("no block past the entry counted the preads: %v", viaUI)
	}
}

// uiCall makes a request of the GUI's API with the token and decodes the
// JSON reply into reply (where not nil); any status but 200 fails the
// test.
type uiCall func(method, path string, body, reply any)

// startUI serves the GUI on a loopback port for the test.
func startUI(t *testing.T) uiCall {
	t.Helper()
	_, call := serveUI(t, t.TempDir(), "127.0.0.1:0")
	return call
}

// serveUI serves the GUI over dir on addr for the test.
func serveUI(t *testing.T, dir, addr string) (*ui.Server, uiCall) {
	t.Helper()
	srv, err := ui.New(ui.Options{Dir: dir, Orphaned: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, l)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	base := "http://127.0.0.1:" + port
	return srv, func(method, path string, body, reply any) {
		t.Helper()
		var in bytes.Buffer
		if body != nil {
			json.NewEncoder(&in).Encode(body)
		}
		req, _ := http.NewRequest(method, base+path, &in)
		req.Header.Set("X-Autoprof-Token", srv.Token())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out bytes.Buffer
		out.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s %s", method, path, resp.Status, out.String())
		}
		if reply != nil {
			if err := json.Unmarshal(out.Bytes(), reply); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
	}
}

// experimentView is an experiment as GET /api/experiments lists it.
type experimentView struct {
	ID         int                `json:"id"`
	State      string             `json:"state"`
	Error      string             `json:"error"`
	Launched   []string           `json:"launched"`
	Experiment *splice.Experiment `json:"experiment"`
	Summary    *splice.RunSummary `json:"summary"`
}

// experiments lists the GUI's experiments.
func experiments(call uiCall) []experimentView {
	var views []experimentView
	call("GET", "/api/experiments", nil, &views)
	return views
}

// TestVMUIBrowserGuest is the guest's half of TestUIBrowserVM
// (cmd/autoprof, build tag vmhost), which boots the VM with the GUI's
// port forwarded and drives the page from a Chromium on the host. Here:
// the GUI serves on 0.0.0.0:8080 and the pread helper waits; the line
// "ui-browser: token=T pid=P" tells the host both. Once the page has
// started an experiment on the helper with every instrument live, the
// helper makes its uiPreads preads; once the experiment has ended, probe
// counts the same specs on a second helper and must count what the page's
// experiment did, exactly. Then this waits for the page to save the
// experiment as browser.json, and checks that file is the experiment run.
func TestVMUIBrowserGuest(t *testing.T) {
	if os.Getenv(uiBrowserEnv) != "1" {
		return // the guest's half of a host test: as a test, nothing to do (a pass, not a skip)
	}
	featuretest.Require(t, features.HaveKprobe())
	dir := t.TempDir()
	srv, call := serveUI(t, dir, "0.0.0.0:8080")
	helper := startPreadN(t)
	fmt.Printf("ui-browser: token=%s pid=%d\n", srv.Token(), helper.Process.Pid)

	var run experimentView
	for deadline := time.Now().Add(5 * time.Minute); run.Experiment == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the page started no experiment with every instrument live in 5 minutes")
		}
		for _, v := range experiments(call) {
			if v.State == "running" && len(v.Launched) > 0 && len(v.Launched) == len(v.Experiment.Instruments) {
				run = v
			}
		}
	}
	specs := run.Launched
	helper.Process.Signal(syscall.SIGUSR1)
	if err := helper.Wait(); err != nil {
		t.Fatalf("the pread helper: %v", err)
	}
	fmt.Println("ui-browser: preads done")
	for deadline := time.Now().Add(3 * time.Minute); run.State == "running"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the page's experiment still runs 3 minutes after its target exited")
		}
		for _, v := range experiments(call) {
			if v.ID == run.ID {
				run = v
			}
		}
	}
	if run.Summary == nil {
		t.Fatalf("the page's experiment %s (%s): no summary", run.State, run.Error)
	}
	viaPage := callsBySpec(run.Summary)

	fn, _, _ := strings.Cut(strings.Split(specs[0], ":")[0], "+")
	viaProbe := probePreads(t, fn, specs)
	t.Logf("%d preads; the page's experiment %v; probe %v", uiPreads, viaPage, viaProbe)
	for _, s := range specs {
		if viaPage[s] != viaProbe[s] {
			t.Errorf("%s: the page's experiment counted %d, probe %d", s, viaPage[s], viaProbe[s])
		}
		if strings.HasSuffix(s, ":timer") && viaPage[s] != uiPreads {
			t.Errorf("%s: %d calls, want %d", s, viaPage[s], uiPreads)
		}
	}
	fmt.Printf("ui-browser: compared with probe: the page's experiment %v, probe %v\n", viaPage, viaProbe)

	saved := filepath.Join(dir, "browser.json")
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(saved); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the page saved no browser.json in 3 minutes")
		}
	}
	data, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	_, plan, err := splice.ParseExperiment(data)
	if err != nil {
		t.Fatalf("browser.json: %v", err)
	}
	var got []string
	for _, e := range plan {
		got = append(got, e.Spec.String())
	}
	if strings.Join(got, " ") != strings.Join(specs, " ") {
		t.Errorf("browser.json holds %q; the experiment ran %q", got, specs)
	}
}

// probePreads runs autoprof probe with specs (kprobe, all on fn) on a
// fresh pread helper, which makes its uiPreads preads once the kernel
// lists every probe, and returns probe's calls by spec.
func probePreads(t *testing.T, fn string, specs []string) map[string]uint64 {
	t.Helper()
	helper := startPreadN(t)
	reaped := make(chan error, 1)
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			list, _ := os.ReadFile("/sys/kernel/debug/kprobes/list")
			if strings.Count(string(list), " "+fn+"+") >= len(specs) {
				break
			}
		}
		helper.Process.Signal(syscall.SIGUSR1)
		reaped <- helper.Wait() // probe ends once the helper is gone
	}()
	code, stdout, stderr := runCmd(append([]string{"probe", "--backend", "kprobe", "--pid", strconv.Itoa(helper.Process.Pid), "--duration", "0", "--interval", "200ms", "--json"}, specs...)...)
	if err := <-reaped; err != nil {
		t.Fatalf("the pread helper under probe: %v", err)
	}
	if code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	var sum probeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("probe's summary: %v\n%s", err, stdout)
	}
	return callsBySpec(&sum)
}

// uiPreadExperiment runs specs (kprobe) as an experiment started through
// the GUI's API on the pread helper, which makes its uiPreads preads once
// every instrument is live, and returns the experiment's summary.
func uiPreadExperiment(t *testing.T, call uiCall, specs []string) *splice.RunSummary {
	t.Helper()
	helper := startPreadN(t)
	var entries []map[string]string
	for _, s := range specs {
		entries = append(entries, map[string]string{"spec": s})
	}
	var started struct {
		ID int `json:"id"`
	}
	call("POST", "/api/experiments", map[string]any{"backend": "kprobe", "experiment": map[string]any{
		"interval": "200ms", "target": map[string]any{"pids": []int{helper.Process.Pid}}, "instruments": entries}}, &started)
	var view struct {
		ID       int                `json:"id"`
		State    string             `json:"state"`
		Error    string             `json:"error"`
		Launched []string           `json:"launched"`
		Summary  *splice.RunSummary `json:"summary"`
	}
	find := func() {
		var views []json.RawMessage
		call("GET", "/api/experiments", nil, &views)
		for _, v := range views {
			json.Unmarshal(v, &view)
			if view.ID == started.ID {
				return
			}
		}
		t.Fatalf("experiment %d is not listed", started.ID)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if find(); len(view.Launched) == len(specs) || view.State != "running" || time.Now().After(deadline) {
			break
		}
	}
	if len(view.Launched) != len(specs) {
		t.Fatalf("experiment %s (%s): launched %q of %q", view.State, view.Error, view.Launched, specs)
	}
	helper.Process.Signal(syscall.SIGUSR1)
	if err := helper.Wait(); err != nil {
		t.Fatalf("the pread helper: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); view.State == "running"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			call("POST", "/api/experiments/"+strconv.Itoa(started.ID)+"/stop", nil, nil)
		}
		find()
	}
	if view.Summary == nil {
		t.Fatalf("experiment %s (%s): no summary", view.State, view.Error)
	}
	return view.Summary
}

// TestVMUITargets: an instrument of kind targets at each indirect call
// site of vfs_read, started through the GUI's API on the pread helper,
// captures what its preads of /dev/zero call there, and the function view
// lists it under its site: /dev/zero's read method, once a pread.
func TestVMUITargets(t *testing.T) {
	featuretest.Require(t, features.HaveKprobe())
	call := startUI(t)
	const fn = "vfs_read"
	var listing struct {
		Spec  string `json:"spec"`
		Sites []struct {
			Off  uint32 `json:"off"`
			Kind string `json:"kind"`
		} `json:"sites"`
	}
	call("GET", "/api/function?name="+fn, nil, &listing)
	var specs []string
	for _, s := range listing.Sites {
		if s.Kind != "indirect" {
			continue
		}
		spec := fmt.Sprintf("%s+%#x:targets", listing.Spec, s.Off)
		var verdict struct {
			Backends map[string]string `json:"backends"`
		}
		call("GET", "/api/check?spec="+url.QueryEscape(spec), nil, &verdict)
		if why := verdict.Backends["kprobe"]; why == "" {
			specs = append(specs, spec)
		} else {
			t.Logf("%s: %s", spec, why)
		}
	}
	if len(specs) == 0 {
		t.Fatalf("%s: no indirect site kprobe takes (sites %+v)", fn, listing.Sites)
	}
	uiPreadExperiment(t, call, specs)
	var after struct {
		Observed map[string][]struct {
			Func  string `json:"func"`
			Calls uint64 `json:"calls"`
		} `json:"observed"`
	}
	call("GET", "/api/function?name="+fn, nil, &after)
	t.Logf("observed at %s's indirect sites: %+v", fn, after.Observed)
	found := false
	for off, ts := range after.Observed {
		for _, o := range ts {
			if o.Func == "read_zero" || o.Func == "read_iter_zero" {
				found = true
				if o.Calls != uiPreads {
					t.Errorf("%s+%s -> %s: %d calls, want %d (one a pread)", fn, off, o.Func, o.Calls, uiPreads)
				}
			}
		}
	}
	if !found {
		t.Errorf("%s: /dev/zero's read method is not among the observed targets %+v", fn, after.Observed)
	}
}

func callsBySpec(sum *splice.RunSummary) map[string]uint64 {
	m := map[string]uint64{}
	for _, s := range sum.Instruments {
		m[s.Instrument] = s.Calls
	}
	return m
}

// startPreadN starts TestPreadNHelper, waiting for its SIGUSR1.
func startPreadN(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPreadNHelper$")
	cmd.Env = append(os.Environ(), "AUTOPROF_HELPER=preadn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	ready := make([]byte, 6)
	if _, err := out.Read(ready); err != nil || string(ready) != "ready\n" {
		t.Fatalf("the pread helper did not start: %q %v", ready, err)
	}
	return cmd
}

// TestPreadNHelper opens /dev/zero, says "ready", waits for SIGUSR1,
// makes uiPreads preads and exits.
func TestPreadNHelper(t *testing.T) {
	if os.Getenv("AUTOPROF_HELPER") != "preadn" {
		return // a helper, run by TestVMUIBlockCounters: as a test, nothing to do (a pass, not a skip)
	}
	go1 := make(chan os.Signal, 1)
	signal.Notify(go1, syscall.SIGUSR1)
	fd, err := syscall.Open("/dev/zero", syscall.O_RDONLY, 0)
	if err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	<-go1
	buf := make([]byte, 64)
	for i := 0; i < uiPreads; i++ {
		if _, err := syscall.Pread(fd, buf, 0); err != nil {
			os.Exit(4)
		}
	}
	os.Exit(0)
}
