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
	const (
		width   = 720
		left    = 230
		right   = 150
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
