package features

import (
	"strings"
	"testing"
)

func TestMissingInternals(t *testing.T) {
	all := `ffffffff8103ca60 T text_poke
ffffffff81a0bc20 T search_exception_tables
ffffffff82a5b5a0 D text_mutex
ffffffff82439060 D vmlinux_build_id
ffffffffc0a01000 t foo	[mod]
`
	s := &System{config: map[string]string{"CONFIG_KALLSYMS_ALL": "y"}}
	if r := missingInternals(strings.NewReader(all), s); r != "" {
		t.Errorf("every symbol listed: %q", r)
	}
	noData := `ffffffff8103ca60 T text_poke
ffffffff81a0bc20 T search_exception_tables
`
	off := &System{config: map[string]string{"CONFIG_KALLSYMS_ALL": ""}}
	if r := missingInternals(strings.NewReader(noData), off); !strings.Contains(r, "CONFIG_KALLSYMS_ALL is not set") {
		t.Errorf("data symbols missing without KALLSYMS_ALL: %q", r)
	}
	if r := missingInternals(strings.NewReader(noData), s); !strings.Contains(r, "no symbol") {
		t.Errorf("data symbols missing with KALLSYMS_ALL: %q", r)
	}
	hidden := strings.ReplaceAll(all, "ffffffff", "00000000")
	hidden = strings.ReplaceAll(hidden, "8103ca60", "00000000")
	if r := missingInternals(strings.NewReader(hidden), s); !strings.Contains(r, "hides addresses") {
		t.Errorf("zeroed addresses: %q", r)
	}
}
