package reports

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/autoprof/autoprof/internal/headless"
)

// TestHTMLSelfContained checks that report.html needs nothing from the
// network: no external script, style sheet, image or font.
func TestHTMLSelfContained(t *testing.T) {
	for name := range fixtures {
		var b bytes.Buffer
		if err := WriteHTML(&b, fixture(t, name)); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		external := regexp.MustCompile(`(?i)(src|href)\s*=|<link|@import|url\(`)
		if m := external.FindString(page); m != "" {
			t.Errorf("%s: report.html refers to something outside it: %q", name, m)
		}
		for _, want := range []string{`id="findings"`, `id="flamegraph"`, `id="timeline"`, `id="listings"`, `<script id="data" type="application/json">`} {
			if !strings.Contains(page, want) {
				t.Errorf("%s: report.html lacks %s", name, want)
			}
		}
	}
}

// startChromium returns a headless browser, or skips the test with the
// reason where Debian's chromium is not installed.
func startChromium(t *testing.T) (*headless.Browser, context.Context) {
	t.Helper()
	path, err := headless.Find()
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	b, err := headless.Start(ctx, path, 1280, 900)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, ctx
}

// TestChromiumSeesErrors makes sure the harness would catch a broken page:
// an uncaught exception and a console.error must both be reported.
func TestChromiumSeesErrors(t *testing.T) {
	b, ctx := startChromium(t)
	page := filepath.Join(t.TempDir(), "broken.html")
	os.WriteFile(page, []byte(`<!DOCTYPE html><html><body><script>console.error("boom"); undefinedFunction();</script></body></html>`), 0o644)
	if err := b.Navigate(ctx, "file://"+page); err != nil {
		t.Fatal(err)
	}
	errs := strings.Join(b.Errors(), "\n")
	if !strings.Contains(errs, "boom") || !strings.Contains(errs, "undefinedFunction") {
		t.Errorf("errors seen: %q", errs)
	}
}

// box is an element's place on the page, in CSS pixels.
type box struct {
	X, Y, W, H float64
	Text       string
	Count      int // matching descendants
}

// TestHTMLInChromium opens report.html of several runs in headless
// Chromium: the page must raise no console error or exception, its script
// must have drawn the flame graph (one box per hot node) and the timeline,
// the findings table must come first and hold the top verdict, and a
// screenshot must show the findings' text and the flame graph's coloured
// boxes where the page says they are. Set AUTOPROF_SCREENSHOTS to a
// directory to keep the screenshots.
func TestHTMLInChromium(t *testing.T) {
	b, ctx := startChromium(t)
	for _, name := range []string{"read4k-6.1", "fsync-6.1", "sampled-host"} {
		t.Run(name, func(t *testing.T) {
			run := fixture(t, name)
			dir := t.TempDir()
			if err := Write(dir, run); err != nil {
				t.Fatal(err)
			}
			if err := b.Navigate(ctx, "file://"+filepath.Join(dir, HTMLFile)); err != nil {
				t.Fatal(err)
			}
			var rendered string
			if err := b.Eval(ctx, `document.documentElement.dataset.rendered || ""`, &rendered); err != nil {
				t.Fatal(err)
			}
			if errs := b.Errors(); len(errs) > 0 || rendered != "1" {
				t.Fatalf("page errors %q, rendered %q", errs, rendered)
			}
			sel := "#findings-table"
			if len(run.Findings) == 0 {
				sel = "#findings + p" // says there is no finding
			}
			findings := elementBox(t, b, ctx, sel, "tbody tr")
			if len(run.Findings) == 0 && !strings.Contains(findings.Text, "No finding") {
				t.Errorf("no findings, but the page says %q", findings.Text)
			}
			if len(run.Findings) > 0 {
				if findings.Count != len(run.Findings) || !strings.Contains(findings.Text, run.Findings[0].Verdict) {
					t.Errorf("findings table: %d rows, text %.200q", findings.Count, findings.Text)
				}
			}
			flame := elementBox(t, b, ctx, "#flamegraph svg", "rect")
			minBoxes := 0
			for _, r := range hotTree(run) {
				if r.node != nil && r.node.InclNs > 0 {
					minBoxes++
				}
			}
			if flame.Count < min(minBoxes, len(run.Nodes)) || flame.W < 500 || flame.H < 17 {
				t.Errorf("flame graph: %d boxes (want at least %d), %vx%v", flame.Count, minBoxes, flame.W, flame.H)
			}
			timeline := elementBox(t, b, ctx, "#timeline svg", "circle")
			if timeline.Count != len(run.Trace) {
				t.Errorf("timeline: %d marks for %d events", timeline.Count, len(run.Trace))
			}
			if findings.Y > flame.Y {
				t.Errorf("findings at y=%v come after the flame graph at y=%v", findings.Y, flame.Y)
			}
			shot, err := b.Screenshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := os.Getenv("AUTOPROF_SCREENSHOTS"); d != "" {
				os.WriteFile(filepath.Join(d, name+".png"), shot, 0o644)
			}
			img, err := png.Decode(bytes.NewReader(shot))
			if err != nil {
				t.Fatal(err)
			}
			if ink := inkShare(img, findings); ink < 0.02 {
				t.Errorf("findings region is blank in the screenshot (%.3f of pixels inked)", ink)
			}
			if c := colourShare(img, flame); c < 0.5 {
				t.Errorf("flame graph region is not drawn in the screenshot (%.3f of pixels coloured)", c)
			}
		})
	}
}

func elementBox(t *testing.T, b *headless.Browser, ctx context.Context, sel, inner string) box {
	t.Helper()
	var bx box
	expr := `(function(){const e=document.querySelector(` + jsString(sel) + `); if(!e) return null;
		const r=e.getBoundingClientRect();
		return {X:r.left+window.scrollX, Y:r.top+window.scrollY, W:r.width, H:r.height, Text:e.innerText||e.textContent,
			Count:e.querySelectorAll(` + jsString(inner) + `).length};})()`
	if err := b.Eval(ctx, expr, &bx); err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	if bx.W == 0 {
		t.Fatalf("%s: not on the page", sel)
	}
	return bx
}

func jsString(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

// inkShare is the fraction of pixels in bx that are dark (text).
func inkShare(img image.Image, bx box) float64 {
	return share2D(img, bx, func(c color.Color) bool {
		r, g, b, _ := c.RGBA()
		return (r+g+b)/3 < 0x8000
	})
}

// colourShare is the fraction of pixels in bx that are saturated colour
// (flame boxes), not white, grey or black.
func colourShare(img image.Image, bx box) float64 {
	return share2D(img, bx, func(c color.Color) bool {
		r, g, b, _ := c.RGBA()
		hi, lo := max(r, g, b), min(r, g, b)
		return hi > 0x4000 && hi-lo > 0x3000
	})
}

func share2D(img image.Image, bx box, hit func(color.Color) bool) float64 {
	rect := image.Rect(int(bx.X), int(bx.Y), int(bx.X+bx.W), int(bx.Y+bx.H)).Intersect(img.Bounds())
	var n, yes int
	for y := rect.Min.Y; y < rect.Max.Y; y++ {
		for x := rect.Min.X; x < rect.Max.X; x++ {
			n++
			if hit(img.At(x, y)) {
				yes++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return float64(yes) / float64(n)
}
