package live

import (
	"os"
	"testing"

	"github.com/autoprof/autoprof/internal/leakcheck"
)

func TestMain(m *testing.M) { os.Exit(leakcheck.Main(m)) }
