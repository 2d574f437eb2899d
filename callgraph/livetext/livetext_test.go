package livetext

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/autoprof/autoprof/internal/features/featuretest"
)

// TestLiveTextClosed opens whichever reader this machine allows (or says
// in one line why none) and checks that Close is idempotent and that a
// closed reader reads nothing.
func TestLiveTextClosed(t *testing.T) {
	text, err := Open()
	if err != nil {
		if !strings.HasPrefix(err.Error(), "no reader of live kernel text: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open: %v", err)
		}
		featuretest.Require(t, err)
	}
	if err := text.Close(); err != nil {
		t.Fatal(err)
	}
	if err := text.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v, want os.ErrClosed", err)
	}
	if err := text.ReadAt(make([]byte, 1), 0xffffffff81000000); err == nil {
		t.Error("read through a closed reader")
	}
}
