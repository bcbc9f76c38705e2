package alert

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Alert types.
const (
	// TypeRunFailed: a run ended Failed (not retried any more).
	TypeRunFailed = "run_failed"
	// TypeExportPaused: the export was paused automatically after too many failed runs.
	TypeExportPaused = "export_paused"
)

// Event is what an alert tells, whatever its format.
type Event struct {
	ID         string // the alert's key: equal for every delivery of one alert
	Type       string // TypeRunFailed or TypeExportPaused
	Export     ExportInfo
	Run        RunInfo // the failed run (the one that paused the export for TypeExportPaused)
	Error      string
	OccurredAt time.Time
	// Suppressed counts the alerts of the export not sent since the last one delivered.
	Suppressed int
	// Period is the export's rate limit, named when Suppressed > 0.
	Period time.Duration
	// FailedRuns of the last ConsideredRuns finished runs failed (TypeExportPaused).
	FailedRuns, ConsideredRuns int
	Links                      Links
}

// ExportInfo names the export.
type ExportInfo struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	DestinationType string `json:"destination_type"`
}

// RunInfo describes the run.
type RunInfo struct {
	ID            string    `json:"id"`
	Attempt       int       `json:"attempt"`
	Generation    int       `json:"generation"`
	BackfillID    string    `json:"backfill_id,omitempty"`
	IntervalStart time.Time `json:"-"`
	IntervalEnd   time.Time `json:"-"`
}

// Links point at the run in the API and the console.
type Links struct {
	RunAPI        string `json:"run_api"`
	RunLogsAPI    string `json:"run_logs_api"`
	RunConsole    string `json:"run_console"`
	ExportConsole string `json:"export_console"`
}

// LinksFor builds the links of a run under the host's public base URL.
func LinksFor(base, exportID, runID string) Links {
	base = strings.TrimRight(base, "/")
	api := fmt.Sprintf("%s/api/v1/batch_exports/%s/runs/%s", base, exportID, runID)
	return Links{
		RunAPI:        api,
		RunLogsAPI:    api + "/logs",
		RunConsole:    fmt.Sprintf("%s/exports/%s/runs/%s", base, exportID, runID),
		ExportConsole: fmt.Sprintf("%s/exports/%s", base, exportID),
	}
}

// maxErrorLen bounds the error text an alert carries (Slack's section text holds 3000).
const maxErrorLen = 1500

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// Summary is the alert in one line of plain text.
func (ev Event) Summary() string {
	iv := fmt.Sprintf("[%s, %s)", ev.Run.IntervalStart.UTC().Format(time.RFC3339), ev.Run.IntervalEnd.UTC().Format(time.RFC3339))
	var s string
	if ev.Type == TypeExportPaused {
		s = fmt.Sprintf("Sluice paused export %q (%s): %d of its last %d runs failed; the run of %s failed: %s",
			ev.Export.Name, ev.Export.DestinationType, ev.FailedRuns, ev.ConsideredRuns, iv, truncate(ev.Error, 300))
	} else {
		s = fmt.Sprintf("Sluice export %q (%s): the run of %s failed: %s", ev.Export.Name, ev.Export.DestinationType, iv, truncate(ev.Error, 300))
	}
	if ev.Suppressed > 0 {
		s += fmt.Sprintf(" (%s)", ev.suppressedNote())
	}
	return s
}

func (ev Event) suppressedNote() string {
	return fmt.Sprintf("%d more failure alert(s) since the last one were not sent: at most one per %s", ev.Suppressed, ev.Period)
}

// jsonBody is FormatJSON's document (docs/alerts.md).
type jsonBody struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	Message    string     `json:"message"`
	Export     ExportInfo `json:"export"`
	Run        jsonRun    `json:"run"`
	Interval   jsonIv     `json:"interval"`
	Error      string     `json:"error"`
	OccurredAt time.Time  `json:"occurred_at"`
	Suppressed int        `json:"suppressed_since_last_alert"`
	AutoPause  *jsonPause `json:"auto_pause,omitempty"`
	Links      Links      `json:"links"`
}

type jsonRun struct {
	RunInfo
	Status string `json:"status"`
}

type jsonIv struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

type jsonPause struct {
	FailedRuns     int `json:"failed_runs"`
	ConsideredRuns int `json:"considered_runs"`
}

// Payload is the request body of ev in format f.
func Payload(ev Event, f Format) ([]byte, error) {
	switch f {
	case FormatJSON:
		b := jsonBody{
			ID: ev.ID, Type: ev.Type, Message: ev.Summary(), Export: ev.Export,
			Run:        jsonRun{RunInfo: ev.Run, Status: "Failed"},
			Interval:   jsonIv{ev.Run.IntervalStart.UTC(), ev.Run.IntervalEnd.UTC()},
			Error:      truncate(ev.Error, maxErrorLen),
			OccurredAt: ev.OccurredAt.UTC(), Suppressed: ev.Suppressed, Links: ev.Links,
		}
		if ev.Type == TypeExportPaused {
			b.AutoPause = &jsonPause{ev.FailedRuns, ev.ConsideredRuns}
		}
		return json.Marshal(b)
	case FormatSlack:
		return json.Marshal(slackMessage(ev))
	}
	return nil, fmt.Errorf("unknown alert format %q", f)
}

// Slack's Block Kit, the subset a message needs.
type slackBody struct {
	Text   string       `json:"text"` // the notification text, and what receivers without blocks show
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string       `json:"type"`
	Text     *slackText   `json:"text,omitempty"`
	Elements []slackText  `json:"elements,omitempty"`
	Fields   []*slackText `json:"fields,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackLink is <url|text>; the URL is Sluice's own, the text is escaped.
func slackLink(url, text string) string {
	return "<" + url + "|" + slackEscape(text) + ">"
}

func slackMessage(ev Event) slackBody {
	mrkdwn := func(s string) *slackText { return &slackText{Type: "mrkdwn", Text: s} }
	title := "Run failed"
	if ev.Type == TypeExportPaused {
		title = "Export paused automatically"
	}
	head := fmt.Sprintf(":rotating_light: *%s*: export %s (%s)", title,
		slackLink(ev.Links.ExportConsole, ev.Export.Name), slackEscape(ev.Export.DestinationType))
	if ev.Type == TypeExportPaused {
		head += fmt.Sprintf("\n%d of its last %d runs failed. Fix the destination, then unpause the export.", ev.FailedRuns, ev.ConsideredRuns)
	}
	// A code block cannot hold ``` itself.
	errText := strings.ReplaceAll(slackEscape(truncate(ev.Error, maxErrorLen)), "```", "'''")
	blocks := []slackBlock{
		{Type: "section", Text: mrkdwn(head)},
		{Type: "section", Fields: []*slackText{
			mrkdwn("*Interval*\n" + ev.Run.IntervalStart.UTC().Format(time.RFC3339) + " – " + ev.Run.IntervalEnd.UTC().Format(time.RFC3339)),
			mrkdwn(fmt.Sprintf("*Run*\n%s (attempt %d)", slackLink(ev.Links.RunConsole, ev.Run.ID), ev.Run.Attempt)),
		}},
		{Type: "section", Text: mrkdwn("```" + errText + "```")},
	}
	ctx := []slackText{{Type: "mrkdwn", Text: slackLink(ev.Links.RunAPI, "API") + " · " + slackLink(ev.Links.RunLogsAPI, "logs")}}
	if ev.Suppressed > 0 {
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: slackEscape(ev.suppressedNote())})
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: ctx})
	return slackBody{Text: slackEscape(ev.Summary()), Blocks: blocks}
}
