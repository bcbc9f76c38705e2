package api

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/host/alert"
	"github.com/sluicehq/sluice/storage"
)

// maxAlertPeriod bounds alert_period_seconds: 30 days.
const maxAlertPeriod = 30 * 24 * 3600

// alertBody is the alert part of an export's POST and PATCH body (docs/alerts.md). Each
// field is absent (unchanged), null (the host's setting) or a value.
type alertBody struct {
	// AlertWebhookURL receives the export's alerts instead of SLUICE_ALERT_WEBHOOK_URL.
	// A secret: it is stored sealed and never returned.
	AlertWebhookURL json.RawMessage `json:"alert_webhook_url"`
	// AlertFormat is "json" or "slack".
	AlertFormat json.RawMessage `json:"alert_format"`
	// AlertPeriodSeconds is the least time between two alerts (0: every alert).
	AlertPeriodSeconds json.RawMessage `json:"alert_period_seconds"`
}

// alertView is what an export's view says of its alerts: never the webhook URL itself.
type alertView struct {
	// AlertWebhookConfigured: the export has a webhook of its own.
	AlertWebhookConfigured bool `json:"alert_webhook_configured"`
	// AlertWebhookOrigin is its scheme and host (the path of a Slack URL is its secret).
	AlertWebhookOrigin *string `json:"alert_webhook_origin"`
	AlertFormat        *string `json:"alert_format"`
	AlertPeriodSeconds *int64  `json:"alert_period_seconds"`
}

func alertViewOf(a storage.ExportAlerts) alertView {
	v := alertView{AlertPeriodSeconds: a.AlertPeriodSeconds}
	if a.AlertWebhookURL != "" {
		o := alert.Origin(a.AlertWebhookURL)
		v.AlertWebhookConfigured, v.AlertWebhookOrigin = true, &o
	}
	if a.AlertFormat != "" {
		f := a.AlertFormat
		v.AlertFormat = &f
	}
	return v
}

// applyAlerts validates the alert fields of body into a, appending every problem to errs.
func applyAlerts(body alertBody, a *storage.ExportAlerts, errs *[]FieldError) {
	if raw := body.AlertWebhookURL; raw != nil {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			*errs = append(*errs, fieldErr("alert_webhook_url", "must be a string (an http or https URL) or null"))
		} else if s == nil || *s == "" {
			a.AlertWebhookURL = ""
		} else if err := alert.ValidateURL(*s); err != nil {
			*errs = append(*errs, fieldErr("alert_webhook_url", err.Error()))
		} else {
			a.AlertWebhookURL = *s
		}
	}
	if raw := body.AlertFormat; raw != nil {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			*errs = append(*errs, fieldErr("alert_format", "must be \"json\", \"slack\" or null"))
		} else if s == nil || *s == "" {
			a.AlertFormat = ""
		} else if f, err := alert.ParseFormat(*s); err != nil {
			*errs = append(*errs, fieldErr("alert_format", err.Error()))
		} else {
			a.AlertFormat = string(f)
		}
	}
	if raw := body.AlertPeriodSeconds; raw != nil {
		if string(raw) == "null" {
			a.AlertPeriodSeconds = nil
			return
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n > maxAlertPeriod {
			*errs = append(*errs, fieldErr("alert_period_seconds",
				fmt.Sprintf("must be an integer from 0 (every alert is sent) to %d (30 days), or null for the host's period; got %s", maxAlertPeriod, strings.TrimSpace(string(raw)))))
			return
		}
		a.AlertPeriodSeconds = &n
	}
}
