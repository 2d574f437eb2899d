package live

import (
	"context"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/features"
	"github.com/autoprof/autoprof/internal/features/featuretest"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/splice"
)

// TestSamplerWindows: the hunt's sampler takes on-CPU samples only while
// a Sample call is under way, overlapping calls included, and tells the
// kernel time its program took (the controller's cost).
func TestSamplerWindows(t *testing.T) {
	featuretest.Require(t, features.HaveSample())
	sess, err := splice.Open(context.Background(), splice.Options{})
	if err != nil {
		t.Fatalf("opening the instruments, which the probes say work here: %v", err)
	}
	defer sess.Close()
	target := instrument.Target{PIDs: []int{os.Getpid()}}
	s, err := OpenSampler(context.Background(), sess, SamplerOptions{Target: target, Freq: 999})
	if err != nil {
		t.Fatalf("opening the sampler: %v", err)
	}
	defer s.Close()
	stop := make(chan struct{})
	defer close(stop)
	go spinInKernel(stop)
	taken := func() uint64 {
		p, err := s.on.Read()
		if err != nil {
			t.Fatal(err)
		}
		return p.Total() + p.User + p.Lost
	}
	n0 := taken()
	time.Sleep(300 * time.Millisecond)
	if n := taken() - n0; n != 0 {
		t.Errorf("between Sample calls the sampler took %d samples", n)
	}
	done := make(chan struct{}, 2)
	for _, d := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
		go func() {
			if _, err := s.Sample(context.Background(), target, d); err != nil {
				t.Error(err)
			}
			done <- struct{}{}
		}()
	}
	<-done // the shorter call ends; the longer one still samples
	mid := taken()
	time.Sleep(100 * time.Millisecond)
	if taken() == mid {
		t.Errorf("the first Sample call's end stopped the second's sampling")
	}
	<-done
	n1 := taken()
	time.Sleep(300 * time.Millisecond)
	if n := taken() - n1; n != 0 {
		t.Errorf("after the Sample calls the sampler took %d samples", n)
	}
	if n1 == n0 {
		t.Fatalf("no sample over 600 ms of Sample calls while a thread spun in the kernel")
	}
	rt, err := s.RunTime()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d samples, the program's run time %v", n1-n0, rt)
	if o, err := sess.Overhead(); err == nil && o.Enabled && rt <= 0 {
		t.Errorf("the kernel keeps BPF run-time statistics, and the sampler's program has none after %d samples", n1-n0)
	}
}

// spinInKernel reads /dev/zero until stop is closed.
func spinInKernel(stop <-chan struct{}) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		select {
		case <-stop:
			return
		default:
			f.Read(buf)
		}
	}
}

// TestSamplerOffCPU: where the off-CPU program loads, a thread blocked in
// read(2) on a pipe for 400 ms of a 600 ms Sample call is found there by
// the kernel's sched_switch for that long, its stack named as
// /proc/TID/stack names it (the scheduler's frames left out), with the
// syscall entry in it.
func TestSamplerOffCPU(t *testing.T) {
	featuretest.Require(t, features.HaveTracepoint())
	sess, err := splice.Open(context.Background(), splice.Options{})
	if err != nil {
		t.Fatalf("opening the instruments, which the probes say work here: %v", err)
	}
	defer sess.Close()
	target := instrument.Target{PIDs: []int{os.Getpid()}}
	s, err := OpenSampler(context.Background(), sess, SamplerOptions{Target: target})
	if s == nil {
		t.Fatalf("opening the sampler: %v", err)
	}
	defer s.Close()
	if s.off == nil {
		t.Fatal("the tracepoint probe says tp_btf programs load here, and the sampler polls /proc for off-CPU stacks")
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	go func() {
		time.Sleep(100 * time.Millisecond)
		var b [1]byte
		syscall.Read(p[0], b[:])
	}()
	time.AfterFunc(500*time.Millisecond, func() { syscall.Write(p[1], []byte{1}) })
	stacks, err := s.Sample(context.Background(), target, 600*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var inRead float64
	var frames []string
	for _, st := range stacks {
		if !st.OnCPU && slices.ContainsFunc(st.Frames, func(f string) bool { return strings.HasSuffix(f, "pipe_read") }) {
			inRead += st.WeightNs
			frames = st.Frames
		}
	}
	t.Logf("%v blocked in %v", time.Duration(inRead), frames)
	if d := time.Duration(inRead); d < 350*time.Millisecond || d > 450*time.Millisecond {
		t.Errorf("a thread blocked in pipe_read for about 400ms of the window: %v measured there", d)
	}
	if len(frames) == 0 || !strings.HasSuffix(frames[len(frames)-1], "pipe_read") || !slices.Contains(frames, "__x64_sys_read") {
		t.Errorf("the wait's frames %v, want the syscall entry outermost and pipe_read innermost, as /proc/TID/stack has them", frames)
	}
	for _, f := range frames {
		if f == "schedule" || f == "__schedule" || strings.Contains(f, "bpf") || strings.Contains(f, "trace") {
			t.Errorf("the wait's frames hold %s, which /proc/TID/stack leaves out", f)
		}
	}
}
