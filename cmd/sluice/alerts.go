package main

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/host/alert"
)

// alertConfig turns serve's alert flags into the host's alert settings (docs/alerts.md).
// The links in alerts default to the listen address.
func alertConfig(webhook, format, period, publicURL, addr string) (alert.Config, error) {
	c := alert.Config{WebhookURL: webhook, PublicURL: publicURL}
	f, err := alert.ParseFormat(format)
	if err != nil {
		return c, fmt.Errorf("--alert-format (SLUICE_ALERT_FORMAT): %w", err)
	}
	c.Format = f
	if c.Period, err = time.ParseDuration(period); err != nil || c.Period <= 0 {
		return c, fmt.Errorf("--alert-period (SLUICE_ALERT_PERIOD) must be a positive duration such as 24h or 30m, got %q", period)
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + addr
	}
	return c, c.WithDefaults().Validate()
}
