//go:build vm

package splice

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
	"github.com/autoprof/autoprof/kmod/splicer"
	"github.com/autoprof/autoprof/splice/patch"
)

// The splice module beside the kernel's kprobes (issue 14, defect 4): a
// splice and kprobes on one function, in both orders, and a kprobe the
// module must see for itself.

// desyncs reports whether a decoder walking f through a jump at w, with
// the rest of w's old bytes left behind it, would lose step: the old tail
// does not decode to an instruction boundary at the window's end.
func desyncs(f *callgraph.Function, w *patch.Window) bool {
	code := append([]byte(nil), f.Code...)
	copy(code[w.Off:], []byte{0xe9, 0, 0, 0, 0})
	at := int(w.Off) + patch.JumpLen
	for at < int(w.Off)+w.Len() {
		in, err := x86asm.Decode(code[at:], 64)
		if err != nil {
			return true
		}
		at += in.Len
	}
	return at != int(w.Off)+w.Len()
}

// desyncWindow finds a block window of several instructions, on the read
// path, whose old tail would throw a decoder out of step after our jump,
// and whose next instruction a kprobe can take.
func desyncWindow(t *testing.T, s *Session) (string, *patch.Window) {
	t.Helper()
	for _, fn := range []string{"vfs_read", "ksys_read", "rw_verify_area", "__x64_sys_pread64", "ksys_pread64", "filemap_read"} {
		f, err := s.Graph().Function(fn)
		if err != nil {
			continue
		}
		for off := uint32(1); off < uint32(len(f.Code)) && off < 512; off++ {
			w, err := s.mod().cat.window(instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(off)}, Kind: instrument.Count})
			if err != nil || len(w.Insts) < 2 || !desyncs(f, w) {
				continue
			}
			next, ok := f.Inst(w.Off + uint32(w.Len()))
			if ok && next.Kind == callgraph.KindOther {
				return fn, w
			}
		}
	}
	t.Fatal("no window on the read path whose old tail would throw a decoder out of step")
	return "", nil
}

// TestVMSpliceKprobe (issue 14, defect 4): a splice and kprobes on the
// same function, in both orders.
//
// Splice first: the window is several instructions whose old tail, left
// after our jump, would not decode in step. The module fills it with nops
// once the jump is live, so that kprobes' can_probe(), which decodes the
// function from its start, accepts a kprobe right after the window
// (before, it refused it: EILSEQ); a kprobe on the function's entry, on the
// ftrace site, goes in too; withdrawing the splice restores the whole
// window and leaves the kprobes counting.
//
// Kprobe first, in the function's body: the catalogue refuses the function
// (kprobes/list), and so does the module when asked directly (its walk of
// the function meets the int3, or the optprobe's jump).
func TestVMSpliceKprobe(t *testing.T) {
	s := openSplice(t, 0)
	text := liveText(t)
	fn, w := desyncWindow(t, s)
	after := uint64(w.Off) + uint64(w.Len())
	t.Logf("%s+%#x: %d bytes, %d instructions; a kprobe at +%#x", fn, w.Off, w.Len(), len(w.Insts), after)
	file := tmpFile(t)
	h := startHelper(t, fmt.Sprintf("pread %d %s", 500, file))
	tg := pid(h.Pid)
	block := instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(w.Off)}, Kind: instrument.Count, Target: tg}
	ins := insertAll(t, s, block)
	kp := openSession(t, "kprobe")
	kins := insert(t, kp, instrument.Spec{Point: instrument.Point{Func: fn, Offset: after}, Kind: instrument.Count, Target: tg},
		instrument.Spec{Point: instrument.Point{Func: fn}, Kind: instrument.Count, Target: tg})
	h.Go(t)
	sr, err := s.Read()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := kp.Read()
	if err != nil {
		t.Fatal(err)
	}
	logReading(t, sr)
	logReading(t, kr)
	got := map[string]uint64{}
	for _, r := range append(sr.Contexts, kr.Contexts...) {
		got[r.Path.String()] += r.Calls
	}
	if got[block.Point.String()] == 0 || got[fmt.Sprintf("%s+%#x", fn, after)] == 0 {
		t.Errorf("the splice or the kprobe after it counted nothing: %v", got)
	}
	if err := ins[0].Close(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, w.Len())
	if err := text.ReadAt(b, w.Addr()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, w.Orig()) {
		t.Fatalf("after the withdrawal the window holds % x, want % x", b, w.Orig())
	}
	if st, err := s.mod().State(ins[0]); err != nil || st != splicer.Withdrawn {
		t.Fatalf("the withdrawn counter is %v (%v), want withdrawn", st, err)
	}
	for _, k := range kins[1:] {
		k.Close()
	}

	// The kprobe after the window is still there, in the body. The
	// catalogue rereads kprobes/list before each batch; Check reads it here.
	if err := s.mod().cat.refreshKprobes(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(block); err == nil || !strings.Contains(err.Error(), "kprobe") {
		t.Fatalf("a splice in a function holding a kprobe: %v, want a refusal naming the kprobe", err)
	}
	ans := askModule(t, s, w, block)
	if ans.Err != -int32(syscall.EBUSY) {
		t.Fatalf("the module, asked directly to splice a function holding a kprobe: errno %d (%s), want EBUSY", -ans.Err, ans.Why())
	}
	t.Logf("the module refuses: %s", ans.Why())
	kins[0].Close()
}

// kprobeAfterJump finds an instruction that follows an unconditional jump
// (where an int3 may also be the compiler's: the barrier after a jmp or
// ret), which a kprobe can take, and a block window before it in the same
// function. It prefers an instruction whose bytes after the first decode
// to its end (mov %rax,%rdi is 48 89 c7, and 89 c7 is mov %eax,%edi): a
// walk that takes the kprobe's int3 for padding then goes on in step, with
// nothing else to trip on (another's tail may throw it out of step, into a
// refusal of its own).
func kprobeAfterJump(t *testing.T, s, kp *Session) (string, uint64, *patch.Window) {
	t.Helper()
	fns := []string{"vfs_read", "ksys_read", "rw_verify_area", "filemap_read", "ksys_pread64", "vfs_write", "ksys_write",
		"do_sys_openat2", "path_lookupat", "link_path_walk", "path_openat", "do_filp_open", "vfs_fstatat", "vfs_statx",
		"filename_lookup", "getname_flags", "__fput", "filp_close", "do_sys_poll", "do_select", "kernel_clone", "copy_process",
		"do_exit", "mmap_region", "do_mmap", "__do_munmap", "do_vmi_munmap", "pipe_read", "pipe_write", "new_sync_read"}
	for _, inStep := range []bool{true, false} {
		for _, fn := range fns {
			if fn, at, w, ok := afterJumpIn(s, kp, fn, inStep); ok {
				return fn, at, w
			}
		}
	}
	t.Fatal("no kprobe-able instruction after a jmp, with a window before it")
	return "", 0, nil
}

// afterJumpIn looks for kprobeAfterJump's place in fn.
func afterJumpIn(s, kp *Session, fn string, inStep bool) (string, uint64, *patch.Window, bool) {
	f, err := s.Graph().Function(fn)
	if err != nil {
		return "", 0, nil, false
	}
	for i := 1; i < len(f.Insts); i++ {
		prev, in := f.Insts[i-1], f.Insts[i]
		if prev.Kind != callgraph.KindJump || in.Kind != callgraph.KindOther || inStep && !tailInStep(f.Code[in.Off:in.End()]) {
			continue
		}
		probe := instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(in.Off)}, Kind: instrument.Count}
		if kp.Check(probe) != nil {
			continue
		}
		for off := uint32(1); off < prev.Off; off++ {
			w, err := s.mod().cat.window(instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(off)}, Kind: instrument.Count})
			if err == nil && w.Off+uint32(w.Len()) <= prev.Off {
				return fn, uint64(in.Off), w, true
			}
		}
	}
	return "", 0, nil, false
}

// tailInStep reports whether an instruction's bytes after its first decode
// to instructions that end where it ends.
func tailInStep(code []byte) bool {
	at := 1
	for at < len(code) {
		in, err := x86asm.Decode(code[at:], 64)
		if err != nil {
			return false
		}
		at += in.Len
	}
	return at == len(code)
}

// TestVMSpliceKprobeAfterJump (issue 14, defect 4): a kprobe's int3 at an
// instruction that follows a jmp looks like the compiler's barrier there.
// The module's walk of the function took it for padding and went on
// decoding the probed instruction's tail: out of step, it could accept a
// window the kprobe makes unsafe. Asked directly (the catalogue's own
// check of kprobes/list bypassed, as a kprobe registered after that read
// would be), the module now asks the kernel whether a kprobe is there
// (get_kprobe, as recover_probed_instruction does) and refuses; once the
// kprobe goes, the same request is taken. The kprobe optimizer is off for
// the test, so that the probe stays an int3.
func TestVMSpliceKprobeAfterJump(t *testing.T) {
	const knob = "/proc/sys/debug/kprobes-optimization"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatalf("the 6.1 and 6.12 kernels have optprobes: %v", err)
	}
	if err := os.WriteFile(knob, []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0) })
	s := openSplice(t, 0)
	kp := openSession(t, "kprobe")
	text := liveText(t)
	fn, at, w := kprobeAfterJump(t, s, kp)
	t.Logf("%s: a kprobe at +%#x, after a jmp; a window at +%#x (%d bytes)", fn, at, w.Off, w.Len())
	if in, _ := s.Graph().Function(fn); in != nil {
		if i, ok := in.Inst(uint32(at)); ok {
			t.Logf("the probed instruction: % x; its tail decodes in step: %v", in.Code[i.Off:i.End()], tailInStep(in.Code[i.Off:i.End()]))
		}
	}
	kins := insert(t, kp, instrument.Spec{Point: instrument.Point{Func: fn, Offset: at}, Kind: instrument.Count})
	f, err := s.Graph().Function(fn)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	if err := text.ReadAt(b, f.Sym.Addr+at); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xcc {
		t.Fatalf("the kprobe at %s+%#x is not an int3 (%#x)", fn, at, b[0])
	}
	block := instrument.Spec{Point: instrument.Point{Func: fn, Offset: uint64(w.Off)}, Kind: instrument.Count}
	got := askModule(t, s, w, block)
	if got.Err != -int32(syscall.EBUSY) || !strings.Contains(got.Why(), "the kernel has a kprobe there") {
		t.Fatalf("the module, asked to splice %s with a kprobe after a jmp: errno %d (%s), want EBUSY naming the kprobe", fn, -got.Err, got.Why())
	}
	t.Logf("the module refuses: %s", got.Why())
	if err := kins[0].Close(); err != nil {
		t.Fatal(err)
	}
	if got := askModule(t, s, w, block); got.Err != 0 {
		t.Fatalf("without the kprobe the module refuses the window: errno %d (%s)", -got.Err, got.Why())
	}
	if _, err := s.mod().dev.Withdraw([]uint64{w.Addr()}); err != nil {
		t.Fatal(err)
	}
}
