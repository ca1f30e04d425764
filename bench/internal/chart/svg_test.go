package chart

import (
	"bytes"
	"encoding/xml"
	"fmt"
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

// TestLongLabelsFit: a long target name before its bar and a long value
// after it stay inside the chart, in both kinds of chart.
func TestLongLabelsFit(t *testing.T) {
	long := "tollgate /token (PostgreSQL+Redis) at 20,000/s"
	var bars, grouped bytes.Buffer
	if err := Bars(&bars, "tokens", "tokens/s", []Bar{{Label: long, Value: 63097, Note: "p99 10.4 ms"}, {Label: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := Grouped(&grouped, "latency", "ms", []string{"p50", "p99"}, []Row{{Label: long, Values: []float64{0.4, 10.4}}}); err != nil {
		t.Fatal(err)
	}
	for name, svg := range map[string]string{"Bars": bars.String(), "Grouped": grouped.String()} {
		d := xml.NewDecoder(strings.NewReader(svg))
		width := 0.0
		var text *xml.StartElement
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tok := tok.(type) {
			case xml.StartElement:
				attr := map[string]string{}
				for _, a := range tok.Attr {
					attr[a.Name.Local] = a.Value
				}
				if tok.Name.Local == "svg" {
					fmt.Sscanf(attr["viewBox"], "0 0 %g", &width)
				}
				if tok.Name.Local == "text" {
					el := tok.Copy()
					text = &el
				}
			case xml.CharData:
				if text == nil {
					continue
				}
				attr := map[string]string{"font-size": "13"}
				for _, a := range text.Attr {
					attr[a.Name.Local] = a.Value
				}
				var x, size float64
				fmt.Sscan(attr["x"], &x)
				fmt.Sscan(attr["font-size"], &size)
				w := textWidth(string(tok), size)
				if attr["text-anchor"] == "end" && x-w < 0 || attr["text-anchor"] == "" && x+w > width {
					t.Errorf("%s: %q at x=%v (%v wide) leaves the %v-wide chart", name, string(tok), x, w, width)
				}
				text = nil
			}
		}
		if width == 0 {
			t.Fatalf("%s: no viewBox", name)
		}
	}
}
