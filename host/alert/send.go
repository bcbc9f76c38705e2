package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// DeliveryError is a failed delivery. Its message never holds the webhook URL.
type DeliveryError struct {
	Status    int    // the receiver's HTTP status; 0 when none came back
	Body      string // the start of the receiver's response
	Retryable bool   // whether a later delivery may succeed
	Err       error  // the transport error, when no status came back
}

func (e *DeliveryError) Error() string {
	if e.Status == 0 {
		return e.Err.Error()
	}
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Status >= 300 && e.Status < 400 {
		s += " (redirects are not followed: configure the final URL)"
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Sender posts alerts. A receiver cannot hold a worker: one delivery is bounded by the
// timeout from dialling to the end of the response, of which at most MaxResponse bytes
// are read.
type Sender struct {
	client      *http.Client
	MaxResponse int64
}

// maxResponse is how much of a response a delivery reads (the rest is not waited for).
const maxResponse = 64 << 10

// bodySnippet is how much of a response an error quotes.
const bodySnippet = 200

// NewSender returns a Sender whose deliveries take at most timeout each.
func NewSender(timeout time.Duration) *Sender {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   min(timeout, 5*time.Second),
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          8,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Sender{
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// A webhook URL names its receiver: a redirect elsewhere is refused.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		MaxResponse: maxResponse,
	}
}

// Send posts body (JSON) to rawURL. id goes in the X-Sluice-Alert-Id header: it is the
// same for every delivery of one alert, so a receiver can drop a repeat.
func (s *Sender) Send(ctx context.Context, rawURL, id string, body []byte) error {
	if err := ValidateURL(rawURL); err != nil {
		return &DeliveryError{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return &DeliveryError{Err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Sluice-Alerts/1")
	req.Header.Set("X-Sluice-Alert-Id", id)
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, whose path may be the webhook's credential.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &DeliveryError{Err: fmt.Errorf("post to %s: %w", Origin(rawURL), err), Retryable: true}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, bodySnippet))
	// Read (a bounded part of) the rest so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.MaxResponse))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &DeliveryError{Status: resp.StatusCode, Body: printable(head), Retryable: retryableStatus(resp.StatusCode)}
}

// retryableStatus: the receiver is busy or broken for now (408, 425, 429, 5xx). Other
// answers (a revoked Slack hook's 404 or 410, a refused payload's 400, a redirect) will
// not change by themselves.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooEarly || code == http.StatusTooManyRequests || code >= 500
}

// printable keeps the valid, printable start of a response for an error message.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
