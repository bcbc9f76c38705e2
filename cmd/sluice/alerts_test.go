package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/alert"
)

func TestAlertConfig(t *testing.T) {
	c, err := alertConfig("", "json", "24h", "", "127.0.0.1:9090")
	if err != nil || c.PublicURL != "http://127.0.0.1:9090" || c.Period != 24*time.Hour || c.Format != alert.FormatJSON {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	c, err = alertConfig("https://hooks.slack.com/services/T/B/x", "slack", "30m", "https://sluice.example.com", "127.0.0.1:8080")
	if err != nil || c.PublicURL != "https://sluice.example.com" || c.Period != 30*time.Minute || c.Format != alert.FormatSlack {
		t.Fatalf("set: %+v, %v", c, err)
	}
	for _, bad := range []struct{ url, format, period, public, want string }{
		{"ftp://x/y", "json", "24h", "", "SLUICE_ALERT_WEBHOOK_URL"},
		{"", "xml", "24h", "", "SLUICE_ALERT_FORMAT"},
		{"", "json", "a day", "", "SLUICE_ALERT_PERIOD"},
		{"", "json", "0s", "", "SLUICE_ALERT_PERIOD"},
		{"", "json", "24h", "sluice.example.com", "SLUICE_PUBLIC_URL"},
	} {
		if _, err := alertConfig(bad.url, bad.format, bad.period, bad.public, "127.0.0.1:8080"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
