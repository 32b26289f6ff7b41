package image

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress reports an unpack: a bar redrawn in place on a terminal, one
// line per layer otherwise (a log, a pipe, systemd's journal).
type progress struct {
	w      io.Writer // nil: silent
	tty    bool
	total  int64 // bytes of every layer's blob; 0 when unknown
	done   int64
	layer  int
	layers int
	drawn  time.Time
}

func newProgress(w io.Writer, f *found) *progress {
	p := &progress{w: w, tty: w != nil && isTerminal(w), layers: len(f.layers)}
	for _, l := range f.layers {
		if l.size < 0 {
			p.total = 0
			break
		}
		p.total += l.size
	}
	if w != nil {
		size := ""
		if p.total > 0 {
			size = ", " + HumanSize(p.total)
		}
		layers := "layers"
		if p.layers == 1 {
			layers = "layer"
		}
		fmt.Fprintf(w, "safe-run: unpacking %s: %d %s%s\n", f.source, p.layers, layers, size)
	}
	return p
}

func (p *progress) startLayer(i int, l layer) {
	p.layer = i + 1
	if p.w == nil {
		return
	}
	if p.tty {
		p.draw()
		return
	}
	id := l.digest
	if id.Hex == "" {
		id = l.diffID
	}
	size := ""
	if l.size >= 0 {
		size = " " + HumanSize(l.size)
	}
	fmt.Fprintf(p.w, "safe-run: layer %d/%d %s%s\n", p.layer, p.layers, short(id.String()), size)
}

func (p *progress) add(n int) {
	p.done += int64(n)
	if p.tty && time.Since(p.drawn) > 100*time.Millisecond {
		p.draw()
	}
}

func (p *progress) draw() {
	p.drawn = time.Now()
	line := fmt.Sprintf("layer %d/%d", p.layer, p.layers)
	if p.total > 0 {
		const width = 30
		frac := min(float64(p.done)/float64(p.total), 1)
		full := int(frac * width)
		line += fmt.Sprintf(" [%s%s] %3.0f%% %s/%s", strings.Repeat("#", full), strings.Repeat("-", width-full),
			frac*100, HumanSize(p.done), HumanSize(p.total))
	} else {
		line += " " + HumanSize(p.done)
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}

// finish ends the bar; the summary goes to the start report.
func (p *progress) finish() {
	if p.w != nil && p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

// countingReader feeds the bytes read through it to a progress.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(n)
	return n, err
}

// HumanSize is n bytes in binary units, as progress and image ls show it.
func HumanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// short abbreviates a digest for progress lines; the start report and
// image ls give it whole where it is to be copied.
func short(digest string) string {
	if i := strings.IndexByte(digest, ':'); i >= 0 && len(digest) > i+13 {
		return digest[:i+13]
	}
	return digest
}
