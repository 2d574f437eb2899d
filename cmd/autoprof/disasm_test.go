package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestDisasmGolden(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"disasm_subject.txt", []string{"disasm", "subject"}},
		{"disasm_subject.json", []string{"disasm", "subject", "--json"}},
		{"disasm_cold.txt", []string{"disasm", "0xffffffff81000185"}},
	} {
		code, out, errOut := runCmd(c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		golden(t, c.golden, []byte(out))
	}
}

// TestDisasmMarks checks the JSON marks against the rules: an instrument
// is placed only at the entry, at the start of a basic block (never ENDBR
// or int3 padding) or at an indirect call site, as a hunt would place it;
// every block's first instruction that a branch reaches is marked as a
// target; every instruction has its address.
func TestDisasmMarks(t *testing.T) {
	useFixture(t)
	_, out, _ := runCmd("disasm", "subject", "--json")
	var d disasmJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	targets, places := 0, map[string]int{}
	for _, b := range d.Blocks {
		for _, in := range b.Insts {
			places[in.Place]++
			if in.Place != "" && (in.Kind == "endbr" || in.Kind == "int3") {
				t.Errorf("+%#x %s is marked %s", in.Off, in.Text, in.Place)
			}
			if in.Place == "block" && in.Off != b.Start {
				t.Errorf("+%#x is marked block but does not start its block", in.Off)
			}
			if in.Target {
				targets++
				if in.Off != b.Start {
					t.Errorf("branch target +%#x does not start its block", in.Off)
				}
			}
			if in.Address != fmt.Sprintf("%#x", 0xffffffff81000100+uint64(in.Off)) {
				t.Errorf("+%#x at %s", in.Off, in.Address)
			}
		}
	}
	if targets != 3 || d.Fentry != 4 || !d.Endbr {
		t.Errorf("%d targets, fentry %d, endbr %v", targets, d.Fentry, d.Endbr)
	}
	blocks := 0 // the starts of the blocks after the entry's, code not padding
	for _, b := range d.Blocks[1:] {
		if k := b.Insts[0].Kind; b.Start < d.CodeEnd && k != "int3" && k != "endbr" {
			blocks++
		}
	}
	if places["entry"] != 1 || places["targets"] != 2 || places["block"] != blocks || places[""] < 40 {
		t.Errorf("places %v: want 1 entry, 2 indirect call sites, %d block starts and the rest (of %d) unmarked", places, blocks, len(d.Blocks))
	}
}

// TestDisasmCalleesAgree: disasm and callees say the same of every call
// site (the thunk an indirect call goes through, a static call's
// trampoline and target).
func TestDisasmCalleesAgree(t *testing.T) {
	useFixture(t)
	_, out, _ := runCmd("disasm", "subject", "--json")
	var d disasmJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	notes := map[uint32]string{}
	for _, b := range d.Blocks {
		for _, in := range b.Insts {
			notes[in.Off] = in.Note
		}
	}
	_, out, _ = runCmd("callees", "subject", "--json")
	var c callsJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Sites {
		if s.From == "subject" && s.Note != "" && notes[s.Off] != s.Note {
			t.Errorf("+%#x: callees says %q, disasm %q", s.Off, s.Note, notes[s.Off])
		}
	}
}

// TestDisasmIntel: --intel prints Intel syntax.
func TestDisasmIntel(t *testing.T) {
	useFixture(t)
	_, att, _ := runCmd("disasm", "subject")
	_, intel, _ := runCmd("disasm", "subject", "--intel")
	if !strings.Contains(att, "push %rbx") || !strings.Contains(intel, "push rbx") || strings.Contains(intel, "push %rbx") || !strings.Contains(intel, "call qword ptr [rbx+0x10]") {
		t.Errorf("AT&T:\n%s\nIntel:\n%s", att, intel)
	}
}

func TestDisasmBadInput(t *testing.T) {
	useFixture(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"disasm"}, 2, "autoprof disasm: disasm takes one FUNC (a name, MODULE:NAME or 0xADDRESS)\n"},
		{[]string{"disasm", "nosuch"}, 2, "autoprof disasm: nosuch: no such kernel function (autoprof syms REGEX lists them)\n"},
		{[]string{"disasm", "0x10"}, 1, "autoprof disasm: address 0x10: not in kernel text\n"},
		{[]string{"disasm", "0xffffffff82000000"}, 1, "autoprof disasm: address 0xffffffff82000000: not in kernel text\n"},
		{[]string{"disasm", "--vmlinuz", "x", "--kcore", "y", "subject"}, 2, "autoprof disasm: --kcore reads the running kernel, --vmlinuz an image: give one of them\n"},
	} {
		code, _, errOut := runCmd(c.args...)
		if code != c.code || errOut != c.want {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
