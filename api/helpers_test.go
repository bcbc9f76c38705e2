package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

const adminToken = "test-admin-token"

// now is the API's clock in these tests (backfill validation).
var now = time.Date(2026, 11, 20, 10, 10, 0, 0, time.UTC)

// Test plugin manifests: s3test has required secrets, webhook an optional one.
var (
	s3Manifest = abi.Manifest{
		Name: "s3test", Version: "1.0.0", ABIVersion: "1.0", Description: "test S3",
		Capabilities: []string{"object"},
		Config: []abi.Field{
			{Name: "bucket_name", Type: abi.TypeString, Required: true},
			{Name: "region", Type: abi.TypeString, Default: "us-east-1"},
			{Name: "prefix", Type: abi.TypeString},
			{Name: "file_format", Type: abi.TypeString, Enum: []string{"JSONLines", "Parquet"}, Default: "JSONLines"},
			{Name: "max_file_size_mb", Type: abi.TypeInteger},
			{Name: "aws_access_key_id", Type: abi.TypeString, Required: true, Secret: true},
			{Name: "aws_secret_access_key", Type: abi.TypeString, Required: true, Secret: true},
		},
	}
	webhookManifest = abi.Manifest{
		Name: "webhook", Version: "0.1.0", ABIVersion: "1.0", Description: "test webhook",
		Config: []abi.Field{
			{Name: "url", Type: abi.TypeString, Required: true},
			{Name: "auth_token", Type: abi.TypeString, Secret: true},
		},
	}
)

// Secret values used in configs: no response may contain them.
const (
	secretKeyID  = "AKIA-SECRET-KEY-ID-1234"
	secretKey    = "very-secret-access-key-5678"
	secretKeyNew = "rotated-secret-access-key-9999"
)

// fakeControl implements api.Controller over the same storage, recording calls.
type fakeControl struct {
	db *storage.DB

	mu       sync.Mutex
	changed  []string // ExportChanged ids
	calls    []string // every method called, by name
	ready    error
	validate func(public map[string]any, secretsSet []string) error
	report   abi.TestReport
	earliest time.Time             // EarliestStart's answer; zero: no events
	estimate *api.BackfillEstimate // EstimateBackfill's answer; nil: 10 records an hour
	requests []api.BackfillRequest // RequestBackfill and EstimateBackfill requests
	tested   []configschema.Stored // TestConnection configs
	sources  []api.PluginSource    // InstallPluginFrom sources
	granted  [][]string            // InstallPluginFrom grants
}

func (f *fakeControl) record(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeControl) called(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeControl) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.changed = nil, nil
}

// InstallPlugin accepts "\0asm" + 4 bytes + a JSON manifest.
func (f *fakeControl) InstallPlugin(ctx context.Context, wasm []byte, granted []string) (*storage.Plugin, error) {
	f.record("InstallPlugin")
	var m abi.Manifest
	if err := json.Unmarshal(wasm[8:], &m); err != nil {
		return nil, api.InvalidPlugin("the module has no readable manifest")
	}
	for _, c := range m.Capabilities {
		if !slices.Contains(granted, c) {
			return nil, api.InvalidPlugin("capability " + c + " is not granted")
		}
	}
	b, _ := json.Marshal(m)
	p, err := f.db.CreatePlugin(ctx, storage.Plugin{Name: m.Name, Version: m.Version, ABIVersion: m.ABIVersion,
		SHA256: fmt.Sprintf("%x", len(wasm)), Manifest: string(b), Capabilities: granted})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// InstallPluginFrom records the source; an upload is installed as InstallPlugin does, a
// reference is refused (no registry here: host/control's tests pull from a real one).
func (f *fakeControl) InstallPluginFrom(ctx context.Context, src api.PluginSource, granted []string) (*storage.Plugin, error) {
	f.mu.Lock()
	f.sources, f.granted = append(f.sources, src), append(f.granted, granted)
	f.mu.Unlock()
	if src.Reference != "" {
		return nil, api.RegistryUnavailable("fake: no registry")
	}
	return f.InstallPlugin(ctx, src.Module, granted)
}

func (f *fakeControl) PluginManifest(_ context.Context, p *storage.Plugin) (abi.Manifest, error) {
	var m abi.Manifest
	err := json.Unmarshal([]byte(p.Manifest), &m)
	return m, err
}

func (f *fakeControl) ValidateDestination(_ context.Context, _ *storage.Plugin, public map[string]any, secretsSet []string) error {
	f.record("ValidateDestination")
	if f.validate != nil {
		return f.validate(public, secretsSet)
	}
	if public["bucket_name"] == "refused-bucket" {
		return api.InvalidDestination("the bucket name is reserved", "bucket_name")
	}
	return nil
}

func (f *fakeControl) ExportChanged(_ context.Context, id string) error {
	f.record("ExportChanged")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed = append(f.changed, id)
	return nil
}

// RequestBackfill creates the backfill and one Completed run per hour.
func (f *fakeControl) RequestBackfill(ctx context.Context, exportID string, req api.BackfillRequest) (*storage.Backfill, error) {
	f.record("RequestBackfill")
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	start, end := req.Start, req.End
	b, err := f.db.CreateBackfill(ctx, storage.Backfill{ExportID: exportID, StartAt: start, EndAt: end, Earliest: req.Earliest})
	if err != nil {
		return nil, err
	}
	n := 0
	for t := start; t.Before(end); t = t.Add(time.Hour) {
		id := b.ID
		if _, _, err := f.db.CreateRunIfAbsent(ctx, storage.Run{ExportID: exportID, IntervalStart: t,
			IntervalEnd: t.Add(time.Hour), BackfillID: &id, Status: storage.StatusCompleted, RecordsCompleted: 10}); err != nil {
			return nil, err
		}
		n++
	}
	if err := f.db.SetBackfillTotalRuns(ctx, b.ID, n); err != nil {
		return nil, err
	}
	b, err = f.db.GetBackfill(ctx, b.ID)
	return &b, err
}

// EstimateBackfill: one run per hour, 10 records each (or the estimate set in the test).
func (f *fakeControl) EstimateBackfill(_ context.Context, _ string, req api.BackfillRequest) (api.BackfillEstimate, error) {
	f.record("EstimateBackfill")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	if f.estimate != nil {
		return *f.estimate, nil
	}
	n := int(req.End.Sub(req.Start) / time.Hour)
	records := int64(10 * n)
	return api.BackfillEstimate{AdjustedStart: req.Start, End: req.Start.Add(time.Duration(n) * time.Hour), Runs: n, Records: &records}, nil
}

// EarliestStart answers f.earliest (none when zero).
func (f *fakeControl) EarliestStart(context.Context, string) (time.Time, bool, error) {
	f.record("EarliestStart")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.earliest, !f.earliest.IsZero(), nil
}

func (f *fakeControl) CancelBackfill(ctx context.Context, id string) error {
	f.record("CancelBackfill")
	_, err := f.db.UpdateBackfillStatus(ctx, id, nil, storage.StatusCancelled)
	return err
}

func (f *fakeControl) RetryRun(ctx context.Context, id string) (*storage.Run, error) {
	f.record("RetryRun")
	r, err := f.db.TransitionRun(ctx, id, nil, storage.StatusStarting, func(r *storage.Run) {
		r.Attempt++
		r.LatestError, r.FinishedAt = "", nil
	})
	return &r, err
}

func (f *fakeControl) CancelRun(ctx context.Context, id string) error {
	f.record("CancelRun")
	_, err := f.db.TransitionRun(ctx, id, nil, storage.StatusCancelled, nil)
	return err
}

func (f *fakeControl) TestDestination(context.Context, string) (abi.TestReport, error) {
	f.record("TestDestination")
	return f.report, nil
}

func (f *fakeControl) TestConnection(_ context.Context, _ *storage.Plugin, cfg configschema.Stored) (abi.TestReport, error) {
	f.record("TestConnection")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tested = append(f.tested, cfg)
	return f.report, nil
}

func (f *fakeControl) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

var _ api.Controller = (*fakeControl)(nil)

// env is one API over a fresh SQLite database.
type env struct {
	t    *testing.T
	db   *storage.DB
	ctl  *fakeControl
	srv  *api.Server
	h    http.Handler
	logs *bytes.Buffer
}

func newEnv(t *testing.T, opts ...func(*api.Config)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, storage.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logs := &bytes.Buffer{}
	cfg := api.Config{
		AdminToken:      adminToken,
		MaxBodyBytes:    16 << 10,
		MaxBackfillRuns: 100,
		Logger:          slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil)),
		Now:             func() time.Time { return now },
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctl := &fakeControl{db: db}
	srv := api.New(cfg, api.Deps{DB: db, Control: ctl})
	return &env{t: t, db: db, ctl: ctl, srv: srv, h: srv.Handler(), logs: logs}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// resp is a recorded response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// apiError is the error envelope's content.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Fields  []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"fields"`
	Exports []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"exports"`
	ExportsTotal int64 `json:"exports_total"`
}

func (r resp) err(t *testing.T) apiError {
	t.Helper()
	var env struct {
		Error *apiError `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil || env.Error == nil {
		t.Fatalf("not an error envelope (%v): %s", err, r.Body)
	}
	if env.Error.Code == "" || env.Error.Message == "" {
		t.Fatalf("error without code or message: %s", r.Body)
	}
	return *env.Error
}

// text is the message and every field message.
func (e apiError) text() string {
	out := e.Message
	for _, f := range e.Fields {
		out += "\n" + f.Field + ": " + f.Message
	}
	return out
}

// fieldNames lists the fields an error names.
func (e apiError) fieldNames() []string {
	var out []string
	for _, f := range e.Fields {
		out = append(out, f.Field)
	}
	return out
}

// raw sends a request with a raw body and token ("" for none).
func (e *env) raw(method, path, token string, body io.Reader, header ...string) resp {
	e.t.Helper()
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return resp{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// do sends body (a string is sent as is, anything else as JSON) with the admin token.
func (e *env) do(method, path string, body any) resp {
	e.t.Helper()
	return e.as(adminToken, method, path, body)
}

func (e *env) as(token, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	return e.raw(method, path, token, rd)
}

// must sends with the admin token and fails unless the status is want.
func (e *env) must(method, path string, body any, want int) resp {
	e.t.Helper()
	r := e.do(method, path, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// plugin stores an installed plugin with the manifest.
func (e *env) plugin(m abi.Manifest) storage.Plugin {
	e.t.Helper()
	b, _ := json.Marshal(m)
	p, err := e.db.CreatePlugin(context.Background(), storage.Plugin{Name: m.Name, Version: m.Version,
		ABIVersion: m.ABIVersion, SHA256: "00", Manifest: string(b), Capabilities: m.Capabilities})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// s3Body is a valid create body for the s3test plugin.
func s3Body(name string) map[string]any {
	return map[string]any{
		"name":     name,
		"interval": "hour",
		"destination": map[string]any{"type": "s3test", "config": map[string]any{
			"bucket_name": "events", "prefix": "sluice/", "aws_access_key_id": secretKeyID, "aws_secret_access_key": secretKey,
		}},
	}
}

// export creates an s3test export through the API and returns its id.
func (e *env) export(name string) string {
	e.t.Helper()
	r := e.must("POST", "/api/v1/batch_exports", s3Body(name), http.StatusCreated)
	return r.json(e.t)["id"].(string)
}

// token creates an API token with scopes through the API.
func (e *env) token(scopes ...string) (id, plain string) {
	e.t.Helper()
	r := e.must("POST", "/api/v1/tokens", map[string]any{"name": "t-" + strings.Join(scopes, "-"), "scopes": scopes}, http.StatusCreated)
	m := r.json(e.t)
	return m["id"].(string), m["token"].(string)
}

// run stores a run of export ending at end (one hour long).
func (e *env) run(exportID string, end time.Time, status storage.RunStatus) storage.Run {
	e.t.Helper()
	r, created, err := e.db.CreateRunIfAbsent(context.Background(), storage.Run{ExportID: exportID,
		IntervalStart: end.Add(-time.Hour), IntervalEnd: end, Status: status})
	if err != nil || !created {
		e.t.Fatalf("create run: %v (created %v)", err, created)
	}
	return r
}

// exportRow reads an export from storage (secrets decrypted).
func (e *env) exportRow(id string) storage.BatchExport {
	e.t.Helper()
	x, err := e.db.GetExport(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

func (e *env) exportCount() int {
	e.t.Helper()
	all, err := e.db.ListExports(context.Background(), storage.ExportFilter{IncludeDeleted: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(all)
}

// noSecrets fails if a response body contains a secret value.
func noSecrets(t *testing.T, where string, body []byte) {
	t.Helper()
	for _, s := range []string{secretKeyID, secretKey, secretKeyNew, "hook-secret-token"} {
		if bytes.Contains(body, []byte(s)) {
			t.Errorf("%s: response contains the secret %q: %s", where, s, body)
		}
	}
}
