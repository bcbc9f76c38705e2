package capture_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/capture"
	"github.com/sluicehq/sluice/host/source"
)

var now = time.Date(2024, 3, 10, 12, 30, 0, 123456000, time.UTC)

type memStore struct {
	mu   sync.Mutex
	evs  []abi.Event
	err  error
	hits int
}

func (m *memStore) Insert(_ context.Context, evs []abi.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hits++
	if m.err != nil {
		return m.err
	}
	m.evs = append(m.evs, evs...)
	return nil
}

func newServer(t *testing.T, ins capture.Inserter, opts capture.Options) *echo.Echo {
	t.Helper()
	e := echo.New()
	capture.RegisterWithOptions(e, ins, capture.StaticKeys{"phc_good": 7, "phc_other": 8}, func() time.Time { return now }, opts)
	return e
}

type resp struct {
	code int
	body map[string]any
}

func post(t *testing.T, e *echo.Echo, path string, body []byte, headers ...string) resp {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: non-JSON answer %d %q", path, rec.Code, rec.Body.String())
	}
	return resp{rec.Code, m}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestSingleEventAllPaths(t *testing.T) {
	for _, path := range []string{"/capture", "/capture/", "/e", "/e/"} {
		st := &memStore{}
		e := newServer(t, st, capture.Options{})
		r := post(t, e, path, []byte(`{"api_key":"phc_good","event":"$pageview","distinct_id":"u1",
			"properties":{"$current_url":"https://x.test","$set":{"plan":"pro"}},"timestamp":"2024-03-10T12:29:00.5Z",
			"uuid":"0190a4f4-7c2a-7d3e-8a1b-123456789abc"}`))
		if r.code != 200 || r.body["status"] != float64(1) {
			t.Fatalf("%s: %d %v", path, r.code, r.body)
		}
		if len(st.evs) != 1 {
			t.Fatalf("%s: %d events stored", path, len(st.evs))
		}
		ev := st.evs[0]
		if ev.Event != "$pageview" || ev.DistinctID != "u1" || ev.TeamID != 7 {
			t.Errorf("%s: %+v", path, ev)
		}
		if uuid.UUID(ev.UUID).String() != "0190a4f4-7c2a-7d3e-8a1b-123456789abc" {
			t.Errorf("uuid %s", uuid.UUID(ev.UUID))
		}
		if !ev.Timestamp.Equal(time.Date(2024, 3, 10, 12, 29, 0, 5e8, time.UTC)) {
			t.Errorf("timestamp %s", ev.Timestamp)
		}
		if !ev.InsertedAt.Equal(now) || ev.CreatedAt == nil {
			t.Errorf("inserted_at %s, want arrival time %s", ev.InsertedAt, now)
		}
		var props map[string]any
		json.Unmarshal([]byte(ev.Properties), &props)
		if props["$set"] == nil || props["$current_url"] != "https://x.test" {
			t.Errorf("properties %s", ev.Properties)
		}
	}
}

func TestBatchAndDefaults(t *testing.T) {
	st := &memStore{}
	e := newServer(t, st, capture.Options{})
	body := `{"api_key":"phc_good","batch":[
		{"event":"a","distinct_id":"u1","properties":{"x":1}},
		{"event":"b","properties":{"distinct_id":"from-props"},"$set_once":{"first":"yes"}},
		{"event":"c","distinct_id":12345,"timestamp":1710073740000}
	]}`
	for _, path := range []string{"/batch", "/batch/"} {
		st.evs = nil
		r := post(t, e, path, []byte(body))
		if r.code != 200 {
			t.Fatalf("%s: %d %v", path, r.code, r.body)
		}
		if len(st.evs) != 3 {
			t.Fatalf("%d events", len(st.evs))
		}
		a, b, c := st.evs[0], st.evs[1], st.evs[2]
		if uuid.UUID(a.UUID).Version() != 7 || a.UUID == b.UUID {
			t.Errorf("generated uuids %s %s, want distinct v7", uuid.UUID(a.UUID), uuid.UUID(b.UUID))
		}
		if !a.Timestamp.Equal(now) {
			t.Errorf("missing timestamp should default to now: %s", a.Timestamp)
		}
		if b.DistinctID != "from-props" || !strings.Contains(b.Properties, `"$set_once":{"first":"yes"}`) {
			t.Errorf("b: %q %s", b.DistinctID, b.Properties)
		}
		if c.DistinctID != "12345" || !c.Timestamp.Equal(time.UnixMilli(1710073740000)) {
			t.Errorf("c: %q %s", c.DistinctID, c.Timestamp)
		}
	}
}

func TestPosthogJSArrayGzipAndToken(t *testing.T) {
	st := &memStore{}
	e := newServer(t, st, capture.Options{})
	body := []byte(`[{"event":"$autocapture","properties":{"token":"phc_other","distinct_id":"anon-1","$elements_chain":"a:nth-child=\"1\""}},
		{"event":"$pageleave","properties":{"token":"phc_good","distinct_id":"anon-1"}}]`)
	r := post(t, e, "/e/?compression=gzip-js", gz(body))
	if r.code != 200 {
		t.Fatalf("%d %v", r.code, r.body)
	}
	r = post(t, e, "/e/", gz(body), "Content-Encoding", "gzip")
	if r.code != 200 || len(st.evs) != 4 {
		t.Fatalf("%d %v, %d events", r.code, r.body, len(st.evs))
	}
	if st.evs[0].TeamID != 8 || st.evs[1].TeamID != 7 {
		t.Errorf("teams from properties.token: %d %d", st.evs[0].TeamID, st.evs[1].TeamID)
	}
	if st.evs[0].ElementsChain != `a:nth-child="1"` {
		t.Errorf("elements chain %q", st.evs[0].ElementsChain)
	}
}

func TestSentAtCorrectsClockSkew(t *testing.T) {
	st := &memStore{}
	e := newServer(t, st, capture.Options{})
	// the device clock is 1 h ahead: the event happened 10 s before sending
	r := post(t, e, "/batch", []byte(`{"api_key":"phc_good","sent_at":"2024-03-10T13:30:10Z",
		"batch":[{"event":"a","distinct_id":"u","timestamp":"2024-03-10T13:30:00Z"}]}`))
	if r.code != 200 {
		t.Fatal(r)
	}
	if want := now.Add(-10 * time.Second); !st.evs[0].Timestamp.Equal(want) {
		t.Errorf("timestamp %s, want %s", st.evs[0].Timestamp, want)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name, path, body string
		code             int
		attr             string
	}{
		{"missing event", "/capture", `{"api_key":"phc_good","distinct_id":"u"}`, 400, "event"},
		{"empty event", "/capture", `{"api_key":"phc_good","event":"","distinct_id":"u"}`, 400, "event"},
		{"missing distinct_id", "/capture", `{"api_key":"phc_good","event":"e"}`, 400, "distinct_id"},
		{"object distinct_id", "/capture", `{"api_key":"phc_good","event":"e","distinct_id":{"a":1}}`, 400, "distinct_id"},
		{"bad timestamp", "/capture", `{"api_key":"phc_good","event":"e","distinct_id":"u","timestamp":"yesterday"}`, 400, "timestamp"},
		{"bad uuid", "/capture", `{"api_key":"phc_good","event":"e","distinct_id":"u","uuid":"not-a-uuid"}`, 400, "uuid"},
		{"properties not object", "/capture", `{"api_key":"phc_good","event":"e","distinct_id":"u","properties":[1]}`, 400, "properties"},
		{"batch index", "/batch", `{"api_key":"phc_good","batch":[{"event":"ok","distinct_id":"u"},{"event":"e","distinct_id":"u","uuid":"zzz"}]}`, 400, "batch[1].uuid"},
		{"batch event not object", "/batch", `{"api_key":"phc_good","batch":[{"event":"ok","distinct_id":"u"},7]}`, 400, "batch[1]"},
		{"batch missing", "/batch", `{"api_key":"phc_good"}`, 400, "batch"},
		{"batch empty", "/batch", `{"api_key":"phc_good","batch":[]}`, 400, "batch"},
		{"malformed json", "/capture", `{"api_key":`, 400, ""},
		{"bad key", "/capture", `{"api_key":"phc_bad","event":"e","distinct_id":"u"}`, 401, "api_key"},
		{"no key", "/capture", `{"event":"e","distinct_id":"u"}`, 401, "api_key"},
		{"bad key in batch", "/batch", `{"batch":[{"event":"e","distinct_id":"u","properties":{"token":"phc_good"}},{"event":"e","distinct_id":"u","properties":{"token":"nope"}}]}`, 401, "batch[1].api_key"},
	}
	for _, tc := range cases {
		st := &memStore{}
		e := newServer(t, st, capture.Options{})
		r := post(t, e, tc.path, []byte(tc.body))
		if r.code != tc.code {
			t.Errorf("%s: status %d %v, want %d", tc.name, r.code, r.body, tc.code)
			continue
		}
		if attr, _ := r.body["attr"].(string); attr != tc.attr {
			t.Errorf("%s: attr %q, want %q (%v)", tc.name, attr, tc.attr, r.body)
		}
		if d, _ := r.body["detail"].(string); d == "" {
			t.Errorf("%s: no detail", tc.name)
		}
		if len(st.evs) != 0 || st.hits != 0 {
			t.Errorf("%s: rejected request stored %d events (all or nothing)", tc.name, len(st.evs))
		}
	}
}

func TestLimitsAndInsertFailure(t *testing.T) {
	st := &memStore{}
	e := newServer(t, st, capture.Options{MaxBodyBytes: 1000, MaxDecompressedBytes: 4000, MaxEvents: 3})
	big := `{"api_key":"phc_good","event":"e","distinct_id":"u","properties":{"p":"` + strings.Repeat("x", 2000) + `"}}`
	if r := post(t, e, "/capture", []byte(big)); r.code != 413 {
		t.Errorf("oversized body: %d", r.code)
	}
	if r := post(t, e, "/capture", gz([]byte(big))); r.code != 200 {
		t.Errorf("compressed body under the cap: %d %v", r.code, r.body)
	}
	bomb := `{"api_key":"phc_good","event":"e","distinct_id":"u","properties":{"p":"` + strings.Repeat("x", 100_000) + `"}}`
	if r := post(t, e, "/capture", gz([]byte(bomb)), "Content-Encoding", "gzip"); r.code != 413 {
		t.Errorf("gzip bomb: %d", r.code)
	}
	four := `{"api_key":"phc_good","batch":[{"event":"e","distinct_id":"u"},{"event":"e","distinct_id":"u"},{"event":"e","distinct_id":"u"},{"event":"e","distinct_id":"u"}]}`
	if r := post(t, e, "/batch", []byte(four)); r.code != 413 {
		t.Errorf("too many events: %d", r.code)
	}
	if r := post(t, e, "/capture", []byte("x"), "Content-Encoding", "br"); r.code != 400 {
		t.Errorf("brotli: %d", r.code)
	}
	st.err = errors.New("disk full")
	r := post(t, e, "/capture", []byte(`{"api_key":"phc_good","event":"e","distinct_id":"u"}`))
	if r.code != 503 || r.body["status"] != nil {
		t.Errorf("failed insert acknowledged: %d %v", r.code, r.body)
	}
}

// End to end: capture into the SQLite store, then a run streams what landed.
func TestCaptureIntoSQLiteAndStream(t *testing.T) {
	store, err := source.NewSQLite(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := newServer(t, store, capture.Options{})
	id := "0190a4f4-7c2a-7d3e-8a1b-123456789abc"
	for i := 0; i < 2; i++ { // a retried request: same uuid, stored once
		r := post(t, e, "/batch", []byte(`{"api_key":"phc_good","batch":[
			{"event":"$pageview","distinct_id":"u1","uuid":"`+id+`","properties":{"plan":"pro"},"timestamp":"2024-03-01T00:00:00Z"},
			{"event":"signup","distinct_id":"u2","properties":{"plan":"free"}}]}`))
		if r.code != 200 {
			t.Fatal(r)
		}
	}
	var got []abi.Event
	vals := make([]abi.Value, len(abi.EventColumns))
	err = store.Stream(context.Background(), source.Query{Start: now.Add(-time.Minute), End: now.Add(time.Minute), Lookback: 30 * 24 * time.Hour},
		source.BatchOptions{}, func(b []byte, n int, _ source.Position) error {
			rd, err := abi.NewBatchReader(b)
			if err != nil {
				return err
			}
			for range n {
				if err := rd.Next(vals); err != nil {
					return err
				}
				var ev abi.Event
				abi.ReadEvent(vals, &ev)
				got = append(got, ev)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	// the retried request re-sent the event without uuid too: it got a new uuid, so 3 rows
	if len(got) != 3 {
		t.Fatalf("%d events streamed, want 3 (uuid-keyed one stored once)", len(got))
	}
	n := 0
	for _, ev := range got {
		if uuid.UUID(ev.UUID).String() == id {
			n++
		}
		if ev.TeamID != 7 || !ev.InsertedAt.Equal(now.Truncate(time.Microsecond)) {
			t.Errorf("%+v", ev)
		}
	}
	if n != 1 {
		t.Errorf("event with explicit uuid stored %d times", n)
	}
}

// Properties are stored as sent (compacted), top-level $set/$set_once join them when they
// lack them, a repeated key keeps its last value, and only top-level members count.
func TestPropertiesKeptAndMerged(t *testing.T) {
	cases := []struct {
		name, event string
		props       string // stored properties, compared as JSON
		distinctID  string
		team        int64
		chain       string
	}{
		{"as sent, compacted", `{"event":"e","distinct_id":"u","properties":{ "b" : [1, {"c": "x y"}],"a":"<&>" }}`,
			`{"b":[1,{"c":"x y"}],"a":"<&>"}`, "u", 7, ""},
		{"nested keys do not count", `{"event":"e","properties":{"o":{"distinct_id":"no","token":"phc_other"},"distinct_id":"yes","token":"phc_good"}}`,
			`{"o":{"distinct_id":"no","token":"phc_other"},"distinct_id":"yes","token":"phc_good"}`, "yes", 7, ""},
		{"escaped key", `{"event":"e","properties":{"distinct\u005fid":"esc","$elements_chain":"a\"b"},"api_key":"phc_good"}`,
			`{"distinct_id":"esc","$elements_chain":"a\"b"}`, "esc", 7, `a"b`},
		{"repeated key: last wins", `{"event":"e","distinct_id":"u","properties":{"p":1,"p":2,"token":"phc_other","token":"phc_good"}}`,
			`{"p":2,"token":"phc_good"}`, "u", 7, ""},
		{"top-level $set joins", `{"event":"e","distinct_id":"u","$set":{"a": 1},"$set_once":{"b":2},"properties":{"x":1}}`,
			`{"x":1,"$set":{"a":1},"$set_once":{"b":2}}`, "u", 7, ""},
		{"properties' own $set wins", `{"event":"e","distinct_id":"u","$set":{"a":1},"properties":{"$set":{"a":2}}}`,
			`{"$set":{"a":2}}`, "u", 7, ""},
		{"no properties", `{"event":"e","distinct_id":"u","$set":{"a":1}}`, `{"$set":{"a":1}}`, "u", 7, ""},
		{"empty properties", `{"event":"e","distinct_id":"u","properties":{ }}`, `{}`, "u", 7, ""},
		{"numbers and literals kept", `{"event":"e","distinct_id":"u","properties":{"n":1.50e3,"t":true,"z":null,"s":"\u00e9"}}`,
			`{"n":1.50e3,"t":true,"z":null,"s":"é"}`, "u", 7, ""},
	}
	for _, tc := range cases {
		st := &memStore{}
		e := newServer(t, st, capture.Options{})
		body := tc.event
		if !strings.Contains(body, "api_key") && !strings.Contains(body, "token") {
			body = strings.Replace(body, "{", `{"api_key":"phc_good",`, 1)
		}
		r := post(t, e, "/capture", []byte(body))
		if r.code != 200 || len(st.evs) != 1 {
			t.Errorf("%s: %d %v", tc.name, r.code, r.body)
			continue
		}
		ev := st.evs[0]
		var got, want any
		if err := json.Unmarshal([]byte(ev.Properties), &got); err != nil {
			t.Errorf("%s: stored properties are not JSON: %s", tc.name, ev.Properties)
			continue
		}
		_ = json.Unmarshal([]byte(tc.props), &want)
		if gb, wb := mustJSON(got), mustJSON(want); gb != wb {
			t.Errorf("%s: properties %s, want %s", tc.name, ev.Properties, tc.props)
		}
		if strings.ContainsAny(ev.Properties, " \n") && !strings.Contains(tc.props, " ") {
			t.Errorf("%s: not compacted: %s", tc.name, ev.Properties)
		}
		if ev.DistinctID != tc.distinctID || ev.TeamID != tc.team || ev.ElementsChain != tc.chain {
			t.Errorf("%s: distinct_id %q team %d chain %q", tc.name, ev.DistinctID, ev.TeamID, ev.ElementsChain)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
