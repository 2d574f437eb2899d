//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/autoprof/autoprof/internal/ui"
)

func runUI(args []string, stdout io.Writer) error {
	fs := newFlags("ui", "")
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on (HOST:PORT; port 0 picks one); anything but loopback is reachable by others, who need the token")
	dir := fs.String("dir", ".", "directory of the experiment files and outputs the page names")
	pos, _, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("ui takes no arguments, got %q", strings.Join(pos, " "))
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		return usageError("--dir %s: not a directory", *dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return usageError("--listen %s: %w", *listen, err)
	}
	s, err := ui.New(ui.Options{Dir: *dir})
	if err != nil {
		l.Close()
		return err
	}
	defer s.Close()
	if !isLoopback(l.Addr()) {
		fmt.Fprintf(stdout, "autoprof ui: serving on %s, which is not loopback: anyone who can reach it can load the page, and only the token in this URL keeps them from the API\n", l.Addr())
	}
	fmt.Fprintln(stdout, s.URL(l.Addr()))
	return s.Serve(ctx, l)
}

// isLoopback reports whether addr is a loopback address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
