package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

const slackHook = "http://127.0.0.1:1/services/T0001/B0001/slackSECRETpath" // loopback: stored and hidden, never called

// An export's alert settings: validated with one error per field, stored, shown without
// the webhook URL, changed and cleared by PATCH; other PATCHes keep them.
func TestExportAlertFields(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)

	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
		msg   string
	}{
		{"ftp URL", with("alert_webhook_url", "ftp://127.0.0.1/x"), "alert_webhook_url", `scheme "ftp"`},
		{"relative URL", with("alert_webhook_url", "/hooks/x"), "alert_webhook_url", `scheme ""`},
		{"no host", with("alert_webhook_url", "http:///x"), "alert_webhook_url", "no host"},
		{"URL a number", with("alert_webhook_url", 5), "alert_webhook_url", "must be a string"},
		{"unknown format", with("alert_format", "teams"), "alert_format", `unknown alert format "teams"`},
		{"format a number", with("alert_format", 1), "alert_format", `"json", "slack" or null`},
		{"negative period", with("alert_period_seconds", -1), "alert_period_seconds", "from 0"},
		{"period too long", with("alert_period_seconds", 2592001), "alert_period_seconds", "2592000"},
		{"period a string", with("alert_period_seconds", "1h"), "alert_period_seconds", "must be an integer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/batch_exports", c.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			er := r.err(t)
			if names := er.fieldNames(); len(names) != 1 || names[0] != c.field || !strings.Contains(er.text(), c.msg) {
				t.Fatalf("error %s, want one on %s mentioning %q", er.text(), c.field, c.msg)
			}
		})
	}
	if n := e.exportCount(); n != 0 {
		t.Fatalf("refused bodies stored %d exports", n)
	}

	// Stored; the view says a webhook is set and where, never the URL.
	r := e.must("POST", "/api/v1/batch_exports", with("alert_webhook_url", slackHook, "alert_format", "Slack", "alert_period_seconds", 3600), http.StatusCreated)
	if bytes.Contains(r.Body, []byte("slackSECRETpath")) {
		t.Fatalf("the webhook URL came back: %s", r.Body)
	}
	v := r.json(t)
	id := v["id"].(string)
	if v["alert_webhook_configured"] != true || v["alert_webhook_origin"] != "http://127.0.0.1:1" || v["alert_format"] != "slack" || v["alert_period_seconds"] != float64(3600) {
		t.Fatalf("view %v", v)
	}
	if row := e.exportRow(id); row.AlertWebhookURL != slackHook || row.AlertFormat != "slack" || *row.AlertPeriodSeconds != 3600 {
		t.Fatalf("stored %+v", row.ExportAlerts)
	}
	for _, path := range []string{"/api/v1/batch_exports/" + id, "/api/v1/batch_exports"} {
		if b := e.must("GET", path, nil, http.StatusOK).Body; bytes.Contains(b, []byte("slackSECRETpath")) {
			t.Fatalf("GET %s returned the webhook URL: %s", path, b)
		}
	}

	// A PATCH of other fields keeps the alert settings (and re-seals nothing it should not).
	e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"name": "renamed", "destination": map[string]any{"config": map[string]any{"prefix": "v2/"}}}, http.StatusOK)
	if row := e.exportRow(id); row.AlertWebhookURL != slackHook || row.AlertFormat != "slack" {
		t.Fatalf("a PATCH of other fields changed the alerts: %+v", row.ExportAlerts)
	}
	// An invalid PATCH changes nothing.
	if r := e.do("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"alert_webhook_url": "gopher://x", "name": "again"}); r.Status != http.StatusBadRequest {
		t.Fatalf("bad PATCH: %d %s", r.Status, r.Body)
	}
	if row := e.exportRow(id); row.AlertWebhookURL != slackHook || row.Name != "renamed" {
		t.Fatalf("a refused PATCH changed the export: %+v", row)
	}
	// Change, then clear with null and "".
	v = e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"alert_webhook_url": "http://127.0.0.1:9/hook", "alert_period_seconds": 0}, http.StatusOK).json(t)
	if v["alert_webhook_origin"] != "http://127.0.0.1:9" || v["alert_period_seconds"] != float64(0) || v["alert_format"] != "slack" {
		t.Fatalf("after PATCH %v", v)
	}
	v = e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"alert_webhook_url": "", "alert_format": nil, "alert_period_seconds": nil}, http.StatusOK).json(t)
	if v["alert_webhook_configured"] != false || v["alert_webhook_origin"] != nil || v["alert_format"] != nil || v["alert_period_seconds"] != nil {
		t.Fatalf("after clearing %v", v)
	}
	if row := e.exportRow(id); row.AlertWebhookURL != "" || row.SealedAlertWebhook != "" || row.AlertPeriodSeconds != nil {
		t.Fatalf("stored after clearing %+v", row.ExportAlerts)
	}
}
