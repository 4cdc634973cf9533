package report_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium runs Debian's chromium headless on url with args (--dump-dom, --screenshot=...)
// and returns its stdout and the console messages it logged.
func chromium(t *testing.T, url string, args ...string) (stdout string, console []string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (%v): run `make deps` (apt-get install chromium)", err)
	}
	base := []string{"--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--enable-logging=stderr", "--v=0"}
	if os.Geteuid() == 0 {
		base = append(base, "--no-sandbox") // chromium refuses root without it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), consoleMessages(errOut.String())
}

// consoleLine is how chromium's logging prints what the page wrote to its console (and
// what the browser reported there: CSP violations, failed loads).
var consoleLine = regexp.MustCompile(`:CONSOLE(?:\(\d+\)|:\d+)?\].*`)

func consoleMessages(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if m := consoleLine.FindString(l); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// TestConsoleDetection checks the console check itself: a page that writes an error to its
// console is seen to do so.
func TestConsoleDetection(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!DOCTYPE html><html><body><p>x</p><script>console.error("pgbatch-console-probe")</script></body></html>`)
	}))
	defer ts.Close()
	_, console := chromium(t, ts.URL, "--dump-dom")
	if !strings.Contains(strings.Join(console, "\n"), "pgbatch-console-probe") {
		t.Fatalf("chromium's log shows no console message of the probe page; the console check would miss errors. Messages: %q", console)
	}
}

var (
	svgElement = regexp.MustCompile(`(?s)<svg class="chart".*?</svg>`)
	pathD      = regexp.MustCompile(`<path class="series" d="([^"]*)"`)
)

// TestBrowserRunPage loads the slow run's report page in a real headless chromium: no
// console message (error, CSP violation or failed load), every chart rendered as an SVG with
// non-empty paths in the DOM chromium built, and a screenshot.
func TestBrowserRunPage(t *testing.T) {
	r := setUp(t)
	url := fmt.Sprintf("%s/report/run/%d", r.url, r.slow)

	dom, console := chromium(t, url, "--dump-dom", "--virtual-time-budget=2000")
	if len(console) > 0 {
		t.Errorf("console messages on %s:\n%s", url, strings.Join(console, "\n"))
	}
	svgs := svgElement.FindAllString(dom, -1)
	if len(svgs) != 5 {
		t.Errorf("the DOM has %d chart SVGs, want 5", len(svgs))
	}
	for i, svg := range svgs {
		paths := pathD.FindAllStringSubmatch(svg, -1)
		if len(paths) == 0 {
			t.Errorf("chart %d has no path", i+1)
		}
		for _, p := range paths {
			if !strings.HasPrefix(p[1], "M") || len(strings.Fields(p[1])) < 4 {
				t.Errorf("chart %d has a path without points: d=%q", i+1, p[1])
			}
		}
	}
	if !strings.Contains(dom, "lock_contention") {
		t.Error("the rendered page lacks the lock_contention finding")
	}

	// At 1280 px nothing is wider than the page, and client waits come first. The page's CSP
	// allows no script: a copy of it, served as a file, measures itself.
	_, html := get(t, url)
	measure := `<script>addEventListener("load", () => { const d = document.documentElement;
		document.body.setAttribute("data-overflow", String(d.scrollWidth - d.clientWidth)); document.body.setAttribute("data-wide", [...document.querySelectorAll("table,pre,svg,div")].filter(e => e.getBoundingClientRect().right > d.clientWidth).map(e => e.tagName + "." + e.className + "(" + (e.querySelector("th") || {}).textContent + ")" + e.parentElement.tagName + ":" + Math.round(e.getBoundingClientRect().right)).join(" ")); });</script></body>`
	copyPath := filepath.Join(t.TempDir(), "run.html")
	if err := os.WriteFile(copyPath, []byte(strings.Replace(html, "</body>", measure, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	measured, _ := chromium(t, "file://"+copyPath, "--dump-dom", "--window-size=1280,2600", "--virtual-time-budget=2000")
	if m := regexp.MustCompile(`data-overflow="(-?\d+)"`).FindStringSubmatch(measured); m == nil || m[1] != "0" {
		t.Errorf("at 1280 px the page overflows horizontally by %v px: %s", m, regexp.MustCompile(`data-wide="[^"]*"`).FindString(measured))
	}
	waits := html[strings.Index(html, `<table class="waits">`):]
	if first := regexp.MustCompile(`<tbody>\s*<tr><td>([^<]*)</td>`).FindStringSubmatch(waits); first == nil || first[1] != "client backend" {
		t.Errorf("wait_summary()'s first row is %v, want a client backend's wait", first)
	}

	shot := filepath.Join(screenshotDir(t), "report-run.png")
	_, console = chromium(t, url, "--screenshot="+shot, "--window-size=1280,2600")
	if len(console) > 0 {
		t.Errorf("console messages while taking the screenshot:\n%s", strings.Join(console, "\n"))
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 2600 {
		t.Errorf("screenshot is %dx%d, want 1280x2600", b.Dx(), b.Dy())
	}
	colours := map[[3]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("the screenshot has %d colours: a blank or broken page", len(colours))
	}
	t.Logf("screenshot %s (%dx%d, %d colours)", shot, b.Dx(), b.Dy(), len(colours))
}

// screenshotDir is $PGBATCH_SCREENSHOT_DIR (kept, to look at), else a test temp dir.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("PGBATCH_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}
