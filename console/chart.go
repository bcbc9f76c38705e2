package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// runsChart draws records per run over runs (newest first, as the API lists them) as an
// inline SVG bar chart, oldest on the left; failed runs are red bars with a cross.
// Only numbers, times and state names (from a fixed set) reach the markup.
func runsChart(runs []runView) template.HTML {
	if len(runs) == 0 {
		return ""
	}
	const (
		w, h        = 600, 140
		left, right = 44, 8
		top, bottom = 10, 22
	)
	var max int64 = 1
	for _, r := range runs {
		if r.RecordsCompleted > max {
			max = r.RecordsCompleted
		}
	}
	plotW, plotH := float64(w-left-right), float64(h-top-bottom)
	slot := plotW / float64(len(runs))
	barW := slot * 0.7
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">`, w, h)
	failed := 0
	for _, r := range runs {
		if isFailure(r.Status) {
			failed++
		}
	}
	fmt.Fprintf(&b, `<title id="chart-title">Records per run, last %d runs</title><desc id="chart-desc">%d of them failed or were cancelled.</desc>`, len(runs), failed)
	// axes and the max label
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%d</text>`, left-4, top+8, max)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">0</text>`, left-4, h-bottom)
	for i := range runs {
		r := runs[len(runs)-1-i] // oldest first
		x := float64(left) + float64(i)*slot + (slot-barW)/2
		bh := plotH * float64(r.RecordsCompleted) / float64(max)
		if bh < 1 {
			bh = 1
		}
		y := float64(h-bottom) - bh
		cls := "bar state-" + strings.ToLower(stateName(r.Status))
		fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s → %s: %s, %d records</title></rect>`,
			cls, x, y, barW, bh, r.IntervalStart.UTC().Format(time.RFC3339), r.IntervalEnd.UTC().Format(time.RFC3339),
			stateName(r.Status), r.RecordsCompleted)
		if isFailure(r.Status) {
			cx, cy := x+barW/2, float64(h-bottom)-bh-6
			fmt.Fprintf(&b, `<path class="fail-mark" d="M%.1f %.1f l6 6 m0 -6 l-6 6"/>`, cx-3, cy-3)
		}
	}
	first, last := runs[len(runs)-1], runs[0]
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">%s</text>`, left, h-6, first.IntervalEnd.UTC().Format("Jan 2 15:04"))
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, w-right, h-6, last.IntervalEnd.UTC().Format("Jan 2 15:04"))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // #nosec: built from numbers and fixed strings only
}

var states = map[string]bool{"Starting": true, "Running": true, "Completed": true, "Failed": true, "FailedRetryable": true, "Cancelled": true}

// stateName keeps a status to the known set (anything else shows as "Unknown").
func stateName(s string) string {
	if states[s] {
		return s
	}
	return "Unknown"
}

func isFailure(s string) bool { return s == "Failed" || s == "FailedRetryable" || s == "Cancelled" }
