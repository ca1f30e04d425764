// Package chart draws the benchmark programs' figures as small,
// self-contained SVG bar charts (no scripts, no external fonts), readable
// in a browser, on GitHub and on a phone.
package chart

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Bar is one labelled value; Note is printed after the value.
type Bar struct {
	Label string
	Value float64
	Note  string
}

// Bars writes a horizontal bar chart: one row per bar, the value printed
// at its end in unit.
func Bars(w io.Writer, title, unit string, bars []Bar) error {
	var labels, ends []string
	for _, b := range bars {
		labels = append(labels, b.Label)
		ends = append(ends, Number(b.Value)+" "+unit+" "+b.Note)
	}
	width, left, right := layout(labels, ends, 13)
	const (
		rowH    = 30
		top     = 48
		barH    = 20
		palette = "#3b6ea5"
	)
	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, b.Value)
	}
	if maxV == 0 {
		maxV = 1
	}
	height := top + rowH*len(bars) + 16
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&s, `<text x="12" y="26" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	span := float64(width - left - right)
	for i, b := range bars {
		y := top + i*rowH
		w := int(math.Round(b.Value / maxV * span))
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+15, html.EscapeString(b.Label))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, max(w, 1), barH, palette)
		fmt.Fprintf(&s, `<text x="%d" y="%d">%s %s %s</text>`+"\n", left+w+6, y+15, Number(b.Value), html.EscapeString(unit), html.EscapeString(b.Note))
	}
	s.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.String())
	return err
}

// layout sizes a chart so that its labels (13 px, right-aligned before
// the bars) and the texts at the bars' ends (endSize px) fit: the bars get
// at least 360 px and the chart is at least 720 wide.
func layout(labels, ends []string, endSize float64) (width, left, right int) {
	longest := func(ss []string, size float64) int {
		w := 0.0
		for _, s := range ss {
			w = math.Max(w, textWidth(s, size))
		}
		return int(math.Ceil(w))
	}
	left = max(120, longest(labels, 13)+20)
	right = longest(ends, endSize) + 16
	return max(720, left+360+right), left, right
}

// textWidth estimates how wide s is in a sans-serif font of size px, on
// the wide side (the charts carry no font of their own).
func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * size * 0.6
}

// Number formats v with a thousands separator and sensible precision.
func Number(v float64) string {
	switch {
	case v >= 100:
		n := int64(math.Round(v))
		str := fmt.Sprint(n)
		var out []byte
		for i, c := range []byte(str) {
			if i > 0 && (len(str)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, c)
		}
		return string(out)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// Row is one labelled group of values, one per series.
type Row struct {
	Label  string
	Values []float64
}

// seriesColors tell a group's bars apart (light to dark: p50, p90, p99).
var seriesColors = []string{"#9ecae1", "#4292c6", "#08519c", "#08306b"}

// Grouped writes a horizontal chart with one group of bars per row, one
// bar per series (e.g. latency percentiles), with a legend.
func Grouped(w io.Writer, title, unit string, series []string, rows []Row) error {
	var labels, ends []string
	for _, r := range rows {
		labels = append(labels, r.Label)
		for _, v := range r.Values {
			ends = append(ends, Number(v)+" "+unit)
		}
	}
	width, left, right := layout(labels, ends, 11)
	const (
		barH = 12
		gap  = 10
		top  = 62
	)
	maxV := 0.0
	for _, r := range rows {
		for _, v := range r.Values {
			maxV = math.Max(maxV, v)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	groupH := barH*len(series) + gap
	height := top + groupH*len(rows) + 16
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(&s, `<text x="12" y="26" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, name := range series {
		x := left + i*90
		fmt.Fprintf(&s, `<rect x="%d" y="38" width="12" height="12" fill="%s"/><text x="%d" y="49">%s</text>`+"\n", x, seriesColors[i%len(seriesColors)], x+16, html.EscapeString(name))
	}
	span := float64(width - left - right)
	for i, r := range rows {
		y := top + i*groupH
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH*len(series)/2+5, html.EscapeString(r.Label))
		for j, v := range r.Values {
			by := y + j*barH
			bw := int(math.Round(v / maxV * span))
			fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, by, max(bw, 1), barH-2, seriesColors[j%len(seriesColors)])
			fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="11">%s %s</text>`+"\n", left+bw+4, by+barH-3, Number(v), html.EscapeString(unit))
		}
	}
	s.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.String())
	return err
}
