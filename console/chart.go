package console

import (
	"fmt"
	"html/template"
	"strings"
)

// Charts are SVG drawn on the server: no JavaScript, no external image,
// allowed by the page's CSP (presentation attributes, no style
// attributes), readable on a phone (the viewBox scales to the width).

// bar is one day of a chart.
type bar struct {
	Label string // the day, 2006-01-02
	Value int64
	Text  string // the value as shown in the tooltip
}

// barChart draws bars with a baseline, the maximum on the left and the
// first and last day below. Every bar carries a <title> (its tooltip, and
// what a screen reader reads).
func barChart(title string, bars []bar) template.HTML {
	const w, h, left, bottom, top = 640.0, 160.0, 56.0, 22.0, 8.0
	var peak int64
	for _, b := range bars {
		peak = max(peak, b.Value)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&sb, `<title>%s</title>`, template.HTMLEscapeString(title))
	plotH := h - bottom - top
	fmt.Fprintf(&sb, `<line class="axis" x1="%g" y1="%g" x2="%g" y2="%g" stroke="#9aa3b2" stroke-width="1"/>`, left, h-bottom, w, h-bottom)
	peakText := "0"
	for _, b := range bars {
		if b.Value == peak {
			peakText = b.Text
			break
		}
	}
	fmt.Fprintf(&sb, `<text x="%g" y="%g" font-size="11" fill="#5d6675" text-anchor="end">%s</text>`, left-4, top+10, template.HTMLEscapeString(peakText))
	fmt.Fprintf(&sb, `<text x="%g" y="%g" font-size="11" fill="#5d6675" text-anchor="end">0</text>`, left-4, h-bottom)
	if n := len(bars); n > 0 {
		slot := (w - left) / float64(n)
		gap := min(slot*0.2, 4)
		for i, b := range bars {
			bh := 0.0
			if peak > 0 {
				bh = plotH * float64(b.Value) / float64(peak)
			}
			if b.Value > 0 && bh < 1 {
				bh = 1
			}
			fmt.Fprintf(&sb, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f5fbf" data-day="%s" data-value="%d"><title>%s: %s</title></rect>`,
				left+float64(i)*slot+gap/2, h-bottom-bh, slot-gap, bh, b.Label, b.Value, b.Label, template.HTMLEscapeString(b.Text))
		}
		fmt.Fprintf(&sb, `<text x="%g" y="%g" font-size="11" fill="#5d6675">%s</text>`, left, h-6, bars[0].Label)
		fmt.Fprintf(&sb, `<text x="%g" y="%g" font-size="11" fill="#5d6675" text-anchor="end">%s</text>`, w, h-6, bars[n-1].Label)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // built from numbers, dates and escaped text only
}

// sparkline is the small pulls-per-day chart of a token card.
func sparkline(title string, values []int64) template.HTML {
	const w, h = 120.0, 24.0
	var peak int64
	for _, v := range values {
		peak = max(peak, v)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="spark" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg"><title>%s</title>`,
		w, h, w, h, template.HTMLEscapeString(title), template.HTMLEscapeString(title))
	if n := len(values); n > 0 && peak > 0 {
		slot := w / float64(n)
		for i, v := range values {
			bh := h * float64(v) / float64(peak)
			if v > 0 && bh < 1 {
				bh = 1
			}
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1f5fbf"/>`, float64(i)*slot, h-bh, max(slot-1, 0.5), bh)
		}
	} else {
		fmt.Fprintf(&sb, `<line x1="0" y1="%g" x2="%g" y2="%g" stroke="#dfe3ea" stroke-width="1"/>`, h-0.5, w, h-0.5)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}
