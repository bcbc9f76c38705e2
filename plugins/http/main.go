// Command http is Sluice's HTTP destination (plugin ABI 1.1, capability http): PostHog's
// HTTP batch export (fields url and token), which posts PostHog /batch bodies so that Sluice
// feeds another Sluice or a PostHog instance; and a generic webhook mode posting JSON Lines.
// Every body is built on the host by an encoder from the batch handles (no record enters the
// guest); the token never reaches the plugin: the host puts it into the body's api_key
// (posthog mode) or an Authorization header (jsonl mode). See docs/http.md.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -tags sluice_abi_1_1 -o http.wasm ./plugins/http
package main

import (
	"errors"
	"net/url"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

const (
	modePostHog = "posthog"
	modeJSONL   = "jsonl"
)

type config struct {
	URL                  string `json:"url"`
	Mode                 string `json:"mode"`
	BatchSize            int    `json:"batch_size"`
	Compression          string `json:"compression"`
	WaitRetryAfterSecond int    `json:"max_retry_after_wait_seconds"`
	TimeoutSeconds       int    `json:"request_timeout_seconds"`
}

type destination struct {
	sdk.Base
	cfg      config
	noToken  bool // jsonl mode: the export sets no token, send no Authorization
	body     *sdk.Upload
	enc      *sdk.Encoder
	inBody   int
	records  int64
	bytes    int64
	requests int
}

func (d *destination) Validate(c *sdk.Config) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return err
	}
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return sdk.FieldError("url", "must be an http or https URL with a host and no user information")
	}
	if cfg.Mode == modePostHog && !c.SecretSet("token") {
		return sdk.FieldError("token", "mode posthog needs the project token (the receiver's api_key)")
	}
	return nil
}

func (c *config) check() error {
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		return sdk.FieldError("batch_size", "must be from 1 to 100000, got %d", c.BatchSize)
	}
	if c.WaitRetryAfterSecond < 0 || c.WaitRetryAfterSecond > 30 {
		return sdk.FieldError("max_retry_after_wait_seconds", "must be from 0 to 30, got %d", c.WaitRetryAfterSecond)
	}
	if c.TimeoutSeconds < 1 || c.TimeoutSeconds > 55 {
		return sdk.FieldError("request_timeout_seconds", "must be from 1 to 55, got %d", c.TimeoutSeconds)
	}
	return nil
}

func (d *destination) Open(rc *sdk.RunContext) error {
	if err := rc.Config(&d.cfg); err != nil {
		return err
	}
	return d.cfg.check()
}

// WriteBatch cuts the batch into requests of batch_size records: the host encodes each
// range into the open body (encoder_write_range), and a full body is sent.
func (d *destination) WriteBatch(b *sdk.Batch) error {
	n := b.Records()
	for pos := 0; pos < n; {
		if d.body == nil {
			if err := d.openBody(); err != nil {
				return err
			}
		}
		take := min(n-pos, d.cfg.BatchSize-d.inBody)
		if err := d.enc.WriteRange(b, pos, take); err != nil {
			return err
		}
		pos += take
		d.inBody += take
		if d.inBody == d.cfg.BatchSize {
			if err := d.send(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *destination) openBody() error {
	format, ctype, apiKey := "jsonl", "application/jsonl", ""
	if d.cfg.Mode == modePostHog {
		format, ctype, apiKey = "posthog_batch", "application/json", "{secret:token}"
	}
	comp, enc := "", ""
	if d.cfg.Compression == "gzip" {
		comp, enc = "gzip", "gzip"
	}
	body, err := sdk.HTTPBody(ctype, enc, apiKey)
	if err != nil {
		return err
	}
	e, err := body.Encoder(abi.EncoderSpec{Format: format, Compression: comp})
	if err != nil {
		_ = body.Abort()
		return err
	}
	d.body, d.enc, d.inBody = body, e, 0
	return nil
}

// send posts the open body and releases it. A 2xx answer counts its records; anything else
// fails the write with the server's status and message, classified by Classify.
func (d *destination) send() error {
	body, records := d.body, d.inBody
	d.body, d.enc, d.inBody = nil, nil, 0
	defer body.Abort()
	req := abi.HTTPRequest{Method: "POST", BodyUpload: body.Handle(), ResponseHeaders: []string{"Retry-After"},
		TimeoutMS: int64(d.cfg.TimeoutSeconds) * 1000, WaitRetryAfterMS: int64(d.cfg.WaitRetryAfterSecond) * 1000,
		MaxResponseBytes: 4096}
	if d.cfg.Mode == modeJSONL && !d.noToken {
		req.Headers = map[string]string{"Authorization": "Bearer {secret:token}"}
	}
	resp, err := sdk.HTTP(req)
	var he *sdk.HostError
	if errors.As(err, &he) && he.Err.Code == "unknown_secret" && req.Headers != nil {
		// No token set: a webhook without authentication.
		d.noToken, req.Headers = true, nil
		resp, err = sdk.HTTP(req)
	}
	if err != nil {
		return err
	}
	d.requests++
	if err := sdk.HTTPResponseError(resp); err != nil {
		return err
	}
	d.records += int64(records)
	d.bytes += resp.RequestBytes
	return nil
}

func (d *destination) Finish() (abi.Result, error) {
	if d.body != nil && d.inBody > 0 {
		if err := d.send(); err != nil {
			return abi.Result{}, err
		}
	}
	if d.body != nil {
		_ = d.body.Abort()
		d.body = nil
	}
	if err := sdk.Metric("http_requests", int64(d.requests)); err != nil {
		return abi.Result{}, err
	}
	return abi.Result{Records: d.records, Bytes: d.bytes,
		Outputs: []abi.Output{{Kind: "http", Name: d.cfg.Mode, Records: d.records, Bytes: d.bytes}}}, nil
}

// Classify: the server's own answer decides (sdk.ClassifyHTTP: 408, 425, 429 and 5xx retry,
// after Retry-After if given; other statuses fail); failures with no answer follow the host
// status (a timeout or reset is retryable, a refused origin or address is not).
func (d *destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := sdk.ClassifyHTTP(e); ok {
		return c
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test sends nothing: an empty /batch would be refused by PostHog. It checks the config.
func (d *destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var cfg config
	err := rc.Config(&cfg)
	if err == nil {
		err = cfg.check()
	}
	step := abi.TestStep{Name: "config", OK: err == nil}
	if err != nil {
		step.Message = err.Error()
	}
	return abi.TestReport{Steps: []abi.TestStep{step}}, nil
}

func init() {
	sdk.Register(abi.Manifest{
		Name:         "http",
		Version:      "0.1.0",
		Description:  "HTTP destination: PostHog /batch bodies (to another Sluice or a PostHog instance) or JSON Lines webhooks",
		Capabilities: []string{abi.CapHTTP},
		Formats:      []string{"posthog_batch", "jsonl"},
		Config: []abi.Field{
			{Name: "url", Type: abi.TypeString, Required: true, Binding: "http.base_url",
				Description: "the endpoint every request is posted to, e.g. https://us.i.posthog.com/batch/ or http://sluice-b:8000/batch"},
			{Name: "token", Type: abi.TypeString, Secret: true, Binding: "http.secret_token",
				Description: "posthog: the receiving project's API key (the body's api_key); jsonl: sent as Authorization: Bearer, if set"},
			{Name: "mode", Type: abi.TypeString, Default: modePostHog, Enum: []string{modePostHog, modeJSONL},
				Description: "posthog: PostHog /batch JSON bodies; jsonl: one event per line (webhook)"},
			{Name: "batch_size", Type: abi.TypeInteger, Default: float64(1000), Description: "events per request (1 to 100000)"},
			{Name: "compression", Type: abi.TypeString, Default: "gzip", Enum: []string{"gzip", "none"},
				Description: "request body compression (Content-Encoding)"},
			{Name: "max_retry_after_wait_seconds", Type: abi.TypeInteger, Default: float64(10),
				Description: "on 429 or 503 with a Retry-After of at most this, wait in the run and send again (0 to 30; 0: never wait, retry the run)"},
			{Name: "request_timeout_seconds", Type: abi.TypeInteger, Default: float64(30), Description: "per request (1 to 55)"},
		},
	}, func() sdk.Destination { return &destination{} })
}

func main() {}
