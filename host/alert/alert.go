// Package alert tells a person when an export needs them: a run that failed for good
// (Failed, not FailedRetryable) or an export paused automatically. It builds the
// notification (a generic JSON body or a Slack incoming-webhook message), delivers it
// through the durable queue (job kind "sluice_alert" on its own River queue, retried
// with backoff when the receiver fails), and rate-limits it to one alert per export per
// period, with the state in the database so the limit holds across hosts and restarts.
// See docs/alerts.md.
package alert

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Format is the shape of the request body.
type Format string

// Formats.
const (
	// FormatJSON is Sluice's own JSON document (docs/alerts.md).
	FormatJSON Format = "json"
	// FormatSlack is a Slack incoming-webhook message ({"text", "blocks"}), which
	// Slack-compatible receivers (Mattermost, Rocket.Chat, Discord's /slack endpoint) take.
	FormatSlack Format = "slack"
)

// Formats lists the accepted formats.
var Formats = []Format{FormatJSON, FormatSlack}

// ParseFormat accepts "json" or "slack" (any case).
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	for _, ok := range Formats {
		if f == ok {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown alert format %q: want json or slack", s)
}

// MaxURLLength bounds a webhook URL.
const MaxURLLength = 2048

// ValidateURL accepts an absolute http or https URL with a host.
func ValidateURL(raw string) error {
	if raw == "" {
		return errors.New("empty webhook URL")
	}
	if len(raw) > MaxURLLength {
		return fmt.Errorf("webhook URL longer than %d bytes", MaxURLLength)
	}
	if strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, " \t\r\n") {
		return errors.New("webhook URL contains white space")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("webhook URL does not parse") // url's message repeats the URL, a secret
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("webhook URL scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("webhook URL has no host")
	}
	return nil
}

// Origin is the part of a webhook URL that may be shown and logged: scheme and host. The
// path, query and user info are left out: in a Slack incoming-webhook URL the path is the
// credential.
func Origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

// Config configures alerts on a host. Zero fields take the defaults of WithDefaults.
type Config struct {
	// WebhookURL receives the alerts of every export that names no webhook of its own
	// (SLUICE_ALERT_WEBHOOK_URL); empty: only those exports alert.
	WebhookURL string
	// Format of alerts to exports without alert_format (SLUICE_ALERT_FORMAT; default json).
	Format Format
	// Period is the least time between two alerts of one export (SLUICE_ALERT_PERIOD;
	// default 24 h, PostHog's one e-mail a day). An export's alert_period_seconds overrides it.
	Period time.Duration
	// PublicURL is the base of the links in alerts (SLUICE_PUBLIC_URL; default
	// http://127.0.0.1:8080, the default listen address).
	PublicURL string
	// Timeout bounds one delivery: connecting, sending, the response (default 10 s).
	Timeout time.Duration
	// MaxAttempts bounds the deliveries of one alert (default 8: about an hour of trying
	// with the default backoff).
	MaxAttempts int
	// RetryBase and RetryMax shape the backoff between deliveries (defaults 30 s, 30 min).
	RetryBase, RetryMax time.Duration
	// Workers is the number of alerts one host delivers at once (default 2).
	Workers int
}

// Defaults.
const (
	DefaultPeriod    = 24 * time.Hour
	DefaultPublicURL = "http://127.0.0.1:8080"
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.Period <= 0 {
		c.Period = DefaultPeriod
	}
	if c.PublicURL == "" {
		c.PublicURL = DefaultPublicURL
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 30 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	return c
}

// Validate checks the host's settings (after WithDefaults).
func (c Config) Validate() error {
	var errs []error
	if c.WebhookURL != "" {
		if err := ValidateURL(c.WebhookURL); err != nil {
			errs = append(errs, fmt.Errorf("alert webhook URL (SLUICE_ALERT_WEBHOOK_URL): %w", err))
		}
	}
	if _, err := ParseFormat(string(c.Format)); err != nil {
		errs = append(errs, fmt.Errorf("SLUICE_ALERT_FORMAT: %w", err))
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("public URL (SLUICE_PUBLIC_URL) %q: want http(s)://host[:port][/path]", c.PublicURL))
	}
	return errors.Join(errs...)
}
