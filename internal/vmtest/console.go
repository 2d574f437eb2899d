package vmtest

import (
	"debug/elf"
	"fmt"
	"regexp"
	"strings"

	"github.com/autoprof/autoprof/internal/vmtest/guest"
)

// problemPatterns match the first line of every kernel report that means
// the kernel itself went wrong. They are the headers printed by
// kernel/panic.c (__warn, panic), arch/x86/mm/fault.c (page_fault_oops),
// arch/x86/kernel/dumpstack.c (die), lib/bug.c, kernel/watchdog.c,
// kernel/hung_task.c and kernel/rcu/tree_stall.h.
var problemPatterns = regexp.MustCompile(strings.Join([]string{
	`Kernel panic - not syncing`,
	`WARNING: CPU: \d+ PID: \d+`,
	`BUG: (unable to handle|kernel NULL pointer|scheduling while atomic|sleeping function called|soft lockup|workqueue lockup|KASAN|Bad page|Bad rss|using smp_processor_id|spinlock|Invalid wait context)`,
	`kernel BUG at `,
	`Oops: `,
	`general protection fault`,
	`watchdog: BUG: soft lockup`,
	`INFO: task .* blocked for more than`,
	`rcu: INFO: .* detected stalls`,
	`INFO: rcu_(sched|preempt) (self-)?detected stall`,
	`WARNING: possible (circular|recursive) locking`,
	`UBSAN: `,
}, "|"))

// firstProblem returns the first kernel problem report in log, trimmed of
// its timestamp, or "".
func firstProblem(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if problemPatterns.MatchString(line) {
			if i := strings.Index(line, "] "); i >= 0 && strings.HasPrefix(line, "[") {
				line = line[i+2:]
			}
			return strings.TrimSpace(line)
		}
	}
	return ""
}

var taintLetters = []struct {
	bit    uint64
	letter string
}{
	{guest.TaintMachine, "M (machine check)"},
	{guest.TaintBadPage, "B (bad page)"},
	{guest.TaintDie, "D (oops)"},
	{guest.TaintWarn, "W (warning)"},
	{guest.TaintSoftLockup, "L (soft lockup)"},
}

func describeTaint(t uint64) string {
	var s []string
	for _, l := range taintLetters {
		if t&l.bit != 0 {
			s = append(s, l.letter)
		}
	}
	return strings.Join(s, ", ")
}

// checkStatic refuses a dynamically linked binary: the guest has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 for the VM", path)
		}
	}
	return nil
}
