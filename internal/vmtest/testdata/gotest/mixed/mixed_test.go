package mixed

import "testing"

func TestPasses(t *testing.T) { t.Log("a log line of a passing test") }

func TestFails(t *testing.T) {
	t.Log("before the failure")
	t.Fatalf("opening a fentry session: %s", "invalid argument")
}

func TestSkips(t *testing.T) {
	t.Log("a line before the skip")
	t.Skipf("kprobe unavailable: CONFIG_KPROBES is not set")
}

func TestSkipsMultiline(t *testing.T) {
	t.Skip("first line of the reason\nsecond line")
}

func TestSubtests(t *testing.T) {
	for _, b := range []string{"fentry", "kprobe"} {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			if b == "kprobe" {
				t.Skipf("no %s here", b)
			}
			t.Logf("%s runs", b)
		})
	}
}
