package live

import (
	"context"
	"os"
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
	sess, err := splice.OpenInstruments(context.Background(), splice.Options{})
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
