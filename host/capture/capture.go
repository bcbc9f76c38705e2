// Package capture is a PostHog-compatible capture endpoint for an event store that can
// insert (the embedded store, or the ClickHouse source with serve --clickhouse-capture):
// SDKs and scripts that speak PostHog's /capture and /batch APIs can send events to Sluice.
// Each request is validated whole and written (Insert returns) before it is acknowledged
// with {"status":1}; a batch is all or nothing.
package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
)

// Inserter stores events (source.SQLite and source.CaptureInserter do).
type Inserter interface {
	Insert(ctx context.Context, evs []abi.Event) error
}

// KeyChecker maps a project API key to its team.
type KeyChecker interface {
	TeamForKey(ctx context.Context, key string) (teamID int64, ok bool)
}

// StaticKeys is a fixed key -> team map.
type StaticKeys map[string]int64

// TeamForKey implements KeyChecker.
func (s StaticKeys) TeamForKey(_ context.Context, key string) (int64, bool) {
	t, ok := s[key]
	return t, ok
}

// Options tunes the endpoint. Zero values take the defaults.
type Options struct {
	MaxBodyBytes         int64 // compressed request body, default 20 MiB (PostHog's limit)
	MaxDecompressedBytes int64 // after gzip, default 100 MiB
	MaxEvents            int   // per request, default 10_000
}

const maxDistinctIDLen = 200

// Register mounts POST /capture, /capture/, /e, /e/, /batch and /batch/ on e.
func Register(e *echo.Echo, ins Inserter, keys KeyChecker, now func() time.Time) {
	RegisterWithOptions(e, ins, keys, now, Options{})
}

// RegisterWithOptions is Register with limits.
func RegisterWithOptions(e *echo.Echo, ins Inserter, keys KeyChecker, now func() time.Time, opts Options) {
	if now == nil {
		now = time.Now
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 20 << 20
	}
	if opts.MaxDecompressedBytes <= 0 {
		opts.MaxDecompressedBytes = 100 << 20
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 10_000
	}
	h := &handler{ins: ins, keys: keys, now: now, opts: opts}
	for _, p := range []string{"/capture", "/capture/", "/e", "/e/", "/batch", "/batch/"} {
		e.POST(p, h.serve)
	}
}

type handler struct {
	ins  Inserter
	keys KeyChecker
	now  func() time.Time
	opts Options
}

// apiError is the JSON error body, shaped like PostHog's.
type apiError struct {
	Type   string `json:"type"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Attr   string `json:"attr,omitempty"`
}

func fail(c echo.Context, status int, typ, code, attr, detail string) error {
	return c.JSON(status, apiError{Type: typ, Code: code, Detail: detail, Attr: attr})
}

func invalid(c echo.Context, attr, detail string) error {
	if attr != "" {
		detail = attr + ": " + detail
	}
	return fail(c, http.StatusBadRequest, "validation_error", "invalid_payload", attr, detail)
}

// rawEvent is one incoming event.
type rawEvent struct {
	APIKey     *string         `json:"api_key"`
	Token      *string         `json:"token"`
	Event      json.RawMessage `json:"event"`
	DistinctID json.RawMessage `json:"distinct_id"`
	Properties json.RawMessage `json:"properties"`
	Timestamp  json.RawMessage `json:"timestamp"`
	Offset     json.RawMessage `json:"offset"`
	UUID       json.RawMessage `json:"uuid"`
	Set        json.RawMessage `json:"$set"`
	SetOnce    json.RawMessage `json:"$set_once"`
}

// request is every shape of request body in one struct, decoded in one pass: a batch envelope
// ({"api_key", "batch": [...], "sent_at"}) or one event (rawEvent's members).
type request struct {
	rawEvent
	Batch  []rawEvent      `json:"batch"`
	SentAt json.RawMessage `json:"sent_at"`
}

type envelope struct {
	APIKey *string         `json:"api_key"`
	Token  *string         `json:"token"`
	Batch  json.RawMessage `json:"batch"`
	SentAt json.RawMessage `json:"sent_at"`
}

func (h *handler) readBody(c echo.Context) ([]byte, int, error) {
	r := c.Request()
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= h.opts.MaxBodyBytes {
		body = make([]byte, n) // the size is known: one allocation, no growing copies
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, h.opts.MaxBodyBytes+1))
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	if int64(len(body)) > h.opts.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", h.opts.MaxBodyBytes)
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get(echo.HeaderContentEncoding)))
	comp := strings.ToLower(c.QueryParam("compression"))
	gz := enc == "gzip" || comp == "gzip" || comp == "gzip-js"
	if !gz && enc != "" && enc != "identity" {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q (gzip only)", enc)
	}
	if !gz && len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
		gz = true // gzip magic without a header, as some SDKs send
	}
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("invalid gzip body: %v", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, h.opts.MaxDecompressedBytes+1))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("invalid gzip body: %v", err)
		}
		if int64(len(out)) > h.opts.MaxDecompressedBytes {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("decompressed body larger than %d bytes", h.opts.MaxDecompressedBytes)
		}
		body = out
	}
	return body, 0, nil
}

func (h *handler) serve(c echo.Context) error {
	body, status, err := h.readBody(c)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			return fail(c, status, "validation_error", "payload_too_large", "", err.Error())
		}
		return invalid(c, "", err.Error())
	}
	now := h.now().UTC()
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return invalid(c, "", "empty body")
	}

	evs, sentAt, topKey, isBatch, verr := h.decode(c, body)
	if verr != nil {
		return verr.send(c)
	}
	prefix := ""
	if isBatch {
		prefix = "batch"
	}
	if len(evs) == 0 {
		return invalid(c, prefix, "no events")
	}
	if len(evs) > h.opts.MaxEvents {
		return fail(c, http.StatusRequestEntityTooLarge, "validation_error", "payload_too_large", prefix,
			fmt.Sprintf("%d events, at most %d per request", len(evs), h.opts.MaxEvents))
	}
	out := make([]abi.Event, 0, len(evs))
	teams := map[string]int64{}
	for i := range evs {
		attr := func(f string) string {
			switch {
			case !isBatch:
				return f
			case f == "":
				return fmt.Sprintf("%s[%d]", prefix, i)
			}
			return fmt.Sprintf("%s[%d].%s", prefix, i, f)
		}
		ev, key, vErr := parseEvent(&evs[i], attr, now, sentAt)
		if vErr != nil {
			return invalid(c, vErr.attr, vErr.msg)
		}
		if topKey != "" {
			key = topKey
		}
		if key == "" {
			return fail(c, http.StatusUnauthorized, "authentication_error", "missing_api_key", attr("api_key"),
				"API key not found: send api_key (or properties.token)")
		}
		team, ok := teams[key]
		if !ok {
			team, ok = h.keys.TeamForKey(c.Request().Context(), key)
			if !ok {
				return fail(c, http.StatusUnauthorized, "authentication_error", "invalid_api_key", attr("api_key"),
					"project API key invalid")
			}
			teams[key] = team
		}
		ev.TeamID = team
		out = append(out, ev)
	}
	if err := h.ins.Insert(c.Request().Context(), out); err != nil {
		c.Logger().Errorf("capture: insert %d events: %v", len(out), err)
		return fail(c, http.StatusServiceUnavailable, "server_error", "insert_failed", "",
			"events could not be stored; retry")
	}
	return c.JSON(http.StatusOK, map[string]int{"status": 1})
}

type validationError struct{ attr, msg string }

// send answers 400 with the error.
func (v *validationError) send(c echo.Context) error { return invalid(c, v.attr, v.msg) }

// decode reads the three shapes of request: {"batch": [...]} (any path), [...] (posthog-js
// to /e/), or one event. A well-formed request is decoded in one pass into rawEvents; one
// that fails goes through the member-by-member path below, which says which member is
// wrong.
func (h *handler) decode(c echo.Context, raw []byte) (evs []rawEvent, sentAt *time.Time, topKey string, isBatch bool, verr *validationError) {
	var b request
	switch raw[0] {
	case '[':
		isBatch = true
		if json.Unmarshal(raw, &evs) == nil {
			return evs, nil, "", true, nil
		}
	case '{':
		if json.Unmarshal(raw, &b) == nil && (b.Batch != nil || !strings.HasPrefix(c.Path(), "/batch")) {
			if b.Batch != nil {
				evs, isBatch = b.Batch, true
			} else {
				evs = []rawEvent{b.rawEvent}
			}
			if present(b.SentAt) {
				t, err := parseTime(b.SentAt)
				if err != nil {
					return nil, nil, "", isBatch, &validationError{"sent_at", err.Error()}
				}
				sentAt = &t
			}
			return evs, sentAt, firstNonEmpty(b.APIKey, b.Token), isBatch, nil
		}
	default:
		return nil, nil, "", false, &validationError{"", "body must be a JSON object or array"}
	}
	return h.decodeSlowly(c, raw)
}

// decodeSlowly decodes a request member by member, to name the one that is wrong.
func (h *handler) decodeSlowly(c echo.Context, body []byte) (evs []rawEvent, sentAt *time.Time, topKey string, isBatch bool, verr *validationError) {
	var (
		raws   []json.RawMessage
		env    envelope
		prefix string
	)
	switch body[0] {
	case '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, nil, "", true, &validationError{"", "malformed JSON: " + err.Error()}
		}
		prefix, isBatch = "batch", true
	case '{':
		if err := json.Unmarshal(body, &env); err != nil {
			return nil, nil, "", false, &validationError{"", "malformed JSON: " + err.Error()}
		}
		if present(env.Batch) {
			if err := json.Unmarshal(env.Batch, &raws); err != nil {
				return nil, nil, "", true, &validationError{"batch", "must be an array of events"}
			}
			prefix, isBatch = "batch", true
		} else if strings.HasPrefix(c.Path(), "/batch") {
			return nil, nil, "", true, &validationError{"batch", "required"}
		} else {
			raws = []json.RawMessage{body}
		}
	}
	if present(env.SentAt) {
		t, err := parseTime(env.SentAt)
		if err != nil {
			return nil, nil, "", isBatch, &validationError{"sent_at", err.Error()}
		}
		sentAt = &t
	}
	evs = make([]rawEvent, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &evs[i]); err != nil {
			attr := prefix
			if isBatch {
				attr = fmt.Sprintf("%s[%d]", prefix, i)
			}
			return nil, nil, "", isBatch, &validationError{attr, "not an event object: " + err.Error()}
		}
	}
	return evs, sentAt, firstNonEmpty(env.APIKey, env.Token), isBatch, nil
}

func firstNonEmpty(ps ...*string) string {
	for _, p := range ps {
		if p != nil && *p != "" {
			return *p
		}
	}
	return ""
}

// parseEvent validates one event and returns it (without team) and its own api key.
func parseEvent(r *rawEvent, attr func(string) string, now time.Time, sentAt *time.Time) (abi.Event, string, *validationError) {
	var ev abi.Event
	// properties: an object or absent; $set / $set_once given at the top level join them,
	// where PostHog keeps them
	obj := json.RawMessage("{}")
	if present(r.Properties) {
		if r.Properties[0] != '{' {
			return ev, "", &validationError{attr("properties"), "must be a JSON object"}
		}
		obj = r.Properties
	}
	props, pi, err := buildProps(obj, r.Set, r.SetOnce)
	if err != nil {
		return ev, "", &validationError{attr("properties"), err.Error()}
	}
	// event name
	name, ok := jsonString(r.Event)
	if !ok || name == "" {
		if len(r.Event) == 0 || string(r.Event) == "null" {
			return ev, "", &validationError{attr("event"), "required"}
		}
		return ev, "", &validationError{attr("event"), "must be a non-empty string"}
	}
	ev.Event = name
	// distinct_id: top level, else properties.distinct_id; strings or numbers
	did, present, ok := distinctID(r.DistinctID)
	if !present {
		did, present, ok = distinctID(pi.distinctID)
	}
	if !present {
		return ev, "", &validationError{attr("distinct_id"), "required"}
	}
	if !ok || strings.TrimSpace(did) == "" {
		return ev, "", &validationError{attr("distinct_id"), "must be a non-empty string or a number"}
	}
	if utf8.RuneCountInString(did) > maxDistinctIDLen {
		return ev, "", &validationError{attr("distinct_id"), fmt.Sprintf("longer than %d characters", maxDistinctIDLen)}
	}
	ev.DistinctID = did
	// uuid: optional, generated (v7) when absent
	if len(r.UUID) > 0 && string(r.UUID) != "null" {
		s, ok := jsonString(r.UUID)
		u, err := uuid.Parse(s)
		if !ok || err != nil {
			return ev, "", &validationError{attr("uuid"), "not a valid UUID"}
		}
		ev.UUID = u
	} else {
		u, err := uuid.NewV7()
		if err != nil {
			u = uuid.New()
		}
		ev.UUID = u
	}
	// timestamp: optional; corrected for the sender's clock with sent_at, or offset (ms ago)
	ev.Timestamp = now
	if len(r.Timestamp) > 0 && string(r.Timestamp) != "null" {
		t, err := parseTime(r.Timestamp)
		if err != nil {
			return ev, "", &validationError{attr("timestamp"), err.Error()}
		}
		if sentAt != nil {
			t = now.Add(t.Sub(*sentAt))
		}
		ev.Timestamp = t
	} else if len(r.Offset) > 0 && string(r.Offset) != "null" {
		var ms float64
		if err := json.Unmarshal(r.Offset, &ms); err != nil || ms < 0 {
			return ev, "", &validationError{attr("offset"), "must be a non-negative number of milliseconds"}
		}
		ev.Timestamp = now.Add(-time.Duration(ms * float64(time.Millisecond)))
	}
	ev.Timestamp = ev.Timestamp.UTC().Truncate(time.Microsecond)
	if ec, ok := jsonString(pi.elementsChain); ok {
		ev.ElementsChain = ec
	}
	ev.Properties = string(props)
	created := now
	ev.CreatedAt = &created
	ev.InsertedAt = now
	key := firstNonEmpty(r.APIKey, r.Token)
	if key == "" {
		if tok, ok := jsonString(pi.token); ok {
			key = tok
		}
	}
	return ev, key, nil
}

// distinctID accepts a string or a number (PostHog stringifies numbers).
func distinctID(raw json.RawMessage) (id string, present, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, false
	}
	if s, ok := jsonString(raw); ok {
		return s, true, true
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&n); err == nil {
		return n.String(), true, true
	}
	return "", true, false
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// parseTime reads an ISO 8601 string (no zone means UTC) or Unix epoch milliseconds.
func parseTime(raw json.RawMessage) (time.Time, error) {
	if s, ok := jsonString(raw); ok {
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t.UTC(), nil
			}
		}
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(ms).UTC(), nil
		}
		return time.Time{}, fmt.Errorf("%q is not an ISO 8601 timestamp", s)
	}
	var ms float64
	if err := json.Unmarshal(raw, &ms); err == nil {
		return time.UnixMicro(int64(ms * 1000)).UTC(), nil
	}
	return time.Time{}, errors.New("must be an ISO 8601 string or epoch milliseconds")
}
