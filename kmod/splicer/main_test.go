package splicer

import (
	"fmt"
	"os"
	"testing"

	"github.com/autoprof/autoprof/internal/testenv"
)

func TestMain(m *testing.M) {
	if err := testenv.NoAsyncPreempt(); err != nil {
		fmt.Fprintln(os.Stderr, "splicer tests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
