package main

import (
	"encoding/json"
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

// TestDisasmMarks checks the JSON marks against the rules: ENDBR and int3
// are never candidates; every block's first instruction that a branch
// reaches is marked as a target.
func TestDisasmMarks(t *testing.T) {
	useFixture(t)
	_, out, _ := runCmd("disasm", "subject", "--json")
	var d disasmJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	targets := 0
	for _, b := range d.Blocks {
		for _, in := range b.Insts {
			if in.Candidate && (in.Kind == "endbr" || in.Kind == "int3") {
				t.Errorf("+%#x %s is a candidate", in.Off, in.Text)
			}
			if in.Target {
				targets++
				if in.Off != b.Start {
					t.Errorf("branch target +%#x does not start its block", in.Off)
				}
			}
		}
	}
	if targets != 3 || d.Fentry != 4 || !d.Endbr {
		t.Errorf("%d targets, fentry %d, endbr %v", targets, d.Fentry, d.Endbr)
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
		{[]string{"disasm", "nosuch"}, 1, "autoprof disasm: function \"nosuch\": not in the kernel's symbol table\n"},
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
