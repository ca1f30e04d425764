package chart

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestNumber(t *testing.T) {
	for in, want := range map[float64]string{1234567: "1,234,567", 20000: "20,000", 999.6: "1,000", 12.34: "12.3", 0.5: "0.50"} {
		if got := Number(in); got != want {
			t.Errorf("Number(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestBarsIsWellFormedSVG: labels come from target names; whatever they
// hold, the file must stay well-formed XML that browsers render.
func TestBarsIsWellFormedSVG(t *testing.T) {
	var b bytes.Buffer
	if err := Bars(&b, `tokens <&> "quotes"`, "req/s", []Bar{{Label: "tollgate <sqlite>", Value: 21000, Note: "p99 4 ms"}, {Label: "ceiling", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	rects := countRects(t, out)
	if rects != 3 || !strings.Contains(out, "21,000 req/s") {
		t.Fatalf("%d rects in\n%s", rects, out)
	}
}

// A latency chart: one bar per percentile per target, a legend, escaped
// labels, well-formed.
func TestGroupedIsWellFormedSVG(t *testing.T) {
	var b bytes.Buffer
	err := Grouped(&b, "latency <ms>", "ms", []string{"p50", "p90", "p99"}, []Row{
		{Label: "tollgate & cache", Values: []float64{1.2, 4.5, 9.8}},
		{Label: "direct", Values: []float64{5, 12, 30}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	rects := countRects(t, out)
	// background + 3 legend swatches + 2×3 bars
	if rects != 10 || !strings.Contains(out, "30.0 ms") || !strings.Contains(out, "p99") {
		t.Fatalf("%d rects in\n%s", rects, out)
	}
}

// countRects parses an SVG as XML (failing the test when it is not
// well-formed) and counts its rect elements.
func countRects(t *testing.T, svg string) int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return rects
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
}
