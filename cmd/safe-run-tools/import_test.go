package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestImportInterrupted: import stops on SIGINT/SIGTERM (the context the
// command line cancels on them) while it waits for its input, a FIFO or
// stdin; the command line catches the signals, so nothing else would
// stop it (found by a black-box probe).
func TestImportInterrupted(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "compose.yml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"stdin":        {"import", "-"},
		"compose FIFO": {"import", "compose", fifo},
	} {
		t.Run(name, func(t *testing.T) {
			stdin, w := io.Pipe()
			defer w.Close()
			var stdout, stderr bytes.Buffer
			g := &globals{stdin: stdin, stdout: &stdout, stderr: &stderr}
			root := rootCommand(g)
			root.SetArgs(args)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()
			time.Sleep(100 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if err == nil || err.Error() != "import interrupted: nothing was written" {
					t.Errorf("error %v, want: import interrupted: nothing was written", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("import did not stop within 5 s of its context's end")
			}
		})
	}
}
