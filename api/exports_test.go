package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
)

// with returns s3Body("x") changed by the dotted key (a nil value deletes the key).
func with(kv ...any) map[string]any {
	b := s3Body("x")
	for i := 0; i+1 < len(kv); i += 2 {
		set(b, kv[i].(string), kv[i+1])
	}
	return b
}

func set(m map[string]any, key string, v any) {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		m = m[p].(map[string]any)
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

type null struct{}

func (null) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func TestCreateExportValidation(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	e.plugin(webhookManifest)
	cases := []struct {
		name   string
		body   any
		status int
		fields []string // fields named, in order; nil: none
		msg    string   // substring of the message or of a field message
	}{
		{"empty body", ``, 400, nil, "empty"},
		{"malformed JSON", `{"name": "x",`, 400, nil, "malformed JSON"},
		{"syntax error", `{"name" "x"}`, 400, nil, "malformed JSON"},
		{"trailing data", `{"name": "x"} {}`, 400, nil, "unexpected data"},
		{"array body", `[1]`, 400, nil, "JSON object"},
		{"missing everything", `{}`, 400, []string{"name", "destination", "interval"}, "required"},
		{"null body", `null`, 400, []string{"name", "destination", "interval"}, "required"},
		{"unknown field", with("colour", "red"), 400, []string{"colour"}, "unknown field"},
		{"unknown nested field", with("destination.plugin", "s3test"), 400, []string{"destination.plugin"}, "unknown field"},
		{"unknown filter field", with("filters", map[string]any{"events": []string{"a"}}), 400, []string{"filters.events"}, "unknown field"},
		{"name not a string", with("name", 5), 400, []string{"name"}, "must be a string"},
		{"blank name", with("name", "  "), 400, []string{"name"}, "must not be empty"},
		{"long name", with("name", strings.Repeat("n", 201)), 400, []string{"name"}, "at most 200"},
		{"unknown interval", with("interval", "fortnight"), 400, []string{"interval"}, `unknown interval "fortnight"`},
		{"interval not a string", with("interval", 3600), 400, []string{"interval"}, "must be a string"},
		{"bad timezone", with("timezone", "Mars/Olympus"), 400, []string{"timezone"}, "unknown time zone"},
		{"empty timezone", with("timezone", ""), 400, []string{"timezone"}, "unknown time zone"},
		{"Local timezone", with("timezone", "Local"), 400, []string{"timezone"}, "unknown time zone"},
		{"offset too large", with("interval_offset", 3600), 400, []string{"interval_offset"}, "from 0 to 3599"},
		{"offset negative", with("interval_offset", -1), 400, []string{"interval_offset"}, "from 0"},
		{"offset not integer", with("interval_offset", 1.5), 400, []string{"interval_offset"}, "must be an integer"},
		{"offset a string", with("interval_offset", "60"), 400, []string{"interval_offset"}, "must be an integer"},
		{"naive start_at", with("start_at", "2026-01-01T00:00:00"), 400, []string{"start_at"}, "time zone"},
		{"date start_at", with("start_at", "2026-01-01"), 400, []string{"start_at"}, "RFC 3339"},
		{"numeric end_at", with("end_at", 1700000000), 400, []string{"end_at"}, "RFC 3339"},
		{"end before start", with("start_at", "2026-02-01T00:00:00Z", "end_at", "2026-01-01T00:00:00Z"), 400, []string{"end_at"}, "after start_at"},
		{"end equals start", with("start_at", "2026-01-01T01:00:00+01:00", "end_at", "2026-01-01T00:00:00Z"), 400, []string{"end_at"}, "after start_at"},
		{"paused not boolean", with("paused", "yes"), 400, []string{"paused"}, "must be a boolean"},
		{"unknown model", with("model", "persons"), 400, []string{"model"}, "only \"events\""},
		{"empty include event", with("filters", map[string]any{"include_events": []string{""}}), 400, []string{"filters.include_events[0]"}, "empty"},
		{"include_events not array", with("filters", map[string]any{"include_events": "pageview"}), 400, []string{"filters.include_events"}, "must be an array"},
		{"bad operator", with("filters", map[string]any{"properties": []any{map[string]any{"key": "k", "operator": "like", "value": "x"}}}), 400, []string{"filters.properties[0].operator"}, "unknown operator"},
		{"missing key", with("filters", map[string]any{"properties": []any{map[string]any{"operator": "exact", "value": "x"}}}), 400, []string{"filters.properties[0].key"}, "required"},
		{"is_set with value", with("filters", map[string]any{"properties": []any{map[string]any{"key": "k", "operator": "is_set", "value": "x"}}}), 400, []string{"filters.properties[0].value"}, "absent"},
		{"icontains number", with("filters", map[string]any{"properties": []any{map[string]any{"key": "k", "operator": "icontains", "value": 5}}}), 400, []string{"filters.properties[0].value"}, "string"},
		{"exact object", with("filters", map[string]any{"properties": []any{map[string]any{"key": "k", "operator": "exact", "value": map[string]any{}}}}), 400, []string{"filters.properties[0].value"}, "array of them"},
		{"destination not object", with("destination", "s3"), 400, []string{"destination"}, "must be an object"},
		{"destination without type", with("destination.type", nil), 400, []string{"destination.type"}, "required"},
		{"unknown destination type", with("destination.type", "ftp"), 400, []string{"destination.type"}, `unknown plugin "ftp"`},
		{"unknown config key", with("destination.config.bucket_nme", "b"), 400, []string{"destination.config.bucket_nme"}, `did you mean "bucket_name"`},
		{"missing required config", with("destination.config.bucket_name", nil), 400, []string{"destination.config.bucket_name"}, "required"},
		{"empty required config", with("destination.config.bucket_name", ""), 400, []string{"destination.config.bucket_name"}, "required"},
		{"missing required secret", with("destination.config.aws_secret_access_key", nil), 400, []string{"destination.config.aws_secret_access_key"}, "required secret is missing"},
		{"redacted secret on create", with("destination.config.aws_secret_access_key", "********"), 400, []string{"destination.config.aws_secret_access_key"}, "not set"},
		{"config wrong type", with("destination.config.max_file_size_mb", "big"), 400, []string{"destination.config.max_file_size_mb"}, "must be an integer"},
		{"config not integer", with("destination.config.max_file_size_mb", 1.5), 400, []string{"destination.config.max_file_size_mb"}, "must be an integer"},
		{"config enum", with("destination.config.file_format", "CSV"), 400, []string{"destination.config.file_format"}, "must be one of"},
		{"config not object", with("destination.config", []string{"a"}), 400, []string{"destination.config"}, "must be an object"},
		{"plugin refuses", with("destination.config.bucket_name", "refused-bucket"), 422, []string{"destination.config.bucket_name"}, "reserved"},
		{"several at once", with("interval", "x", "timezone", "y", "name", ""), 400, []string{"name", "interval", "timezone"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.ctl.resetCalls()
			r := e.do("POST", "/api/v1/batch_exports", c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			ae := r.err(t)
			wantCode := api.CodeInvalidRequest
			if c.status == 422 {
				wantCode = api.CodeInvalidConfig
			}
			if ae.Code != wantCode {
				t.Errorf("code %q, want %q", ae.Code, wantCode)
			}
			if got := ae.fieldNames(); !slices.Equal(got, c.fields) {
				t.Errorf("fields %v, want %v: %s", got, c.fields, r.Body)
			}
			if c.msg != "" && !strings.Contains(ae.text(), c.msg) {
				t.Errorf("error lacks %q: %s", c.msg, r.Body)
			}
			noSecrets(t, c.name, r.Body)
			if n := e.ctl.called("ExportChanged"); n != 0 {
				t.Errorf("ExportChanged called %d times on a rejected request", n)
			}
			if c.status == 400 && e.ctl.called("ValidateDestination") != 0 {
				t.Errorf("the plugin validated a config that failed the schema")
			}
		})
	}
	if n := e.exportCount(); n != 0 {
		t.Fatalf("rejected requests stored %d exports", n)
	}
}

func TestCreateExportDefaultsAndView(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	body := with("timezone", "Europe/Paris", "interval", "day", "interval_offset", 7200,
		"start_at", "2026-01-01T00:00:00+01:00", "end_at", nil,
		"filters", map[string]any{"include_events": []string{"$pageview"},
			"properties": []any{map[string]any{"key": "plan", "operator": "exact", "value": []any{"pro", 3, true}}}})
	r := e.must("POST", "/api/v1/batch_exports", body, http.StatusCreated)
	noSecrets(t, "create", r.Body)
	var v struct {
		ID          string `json:"id"`
		Destination struct {
			Type          string         `json:"type"`
			PluginVersion string         `json:"plugin_version"`
			Config        map[string]any `json:"config"`
			SecretsSet    []string       `json:"secrets_set"`
		} `json:"destination"`
		Interval       string     `json:"interval"`
		Timezone       string     `json:"timezone"`
		IntervalOffset int        `json:"interval_offset"`
		StartAt        *time.Time `json:"start_at"`
		EndAt          *time.Time `json:"end_at"`
		Paused         bool       `json:"paused"`
		Model          string     `json:"model"`
		Filters        api.Filters
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"bucket_name": "events", "prefix": "sluice/", "region": "us-east-1", "file_format": "JSONLines"}
	if len(v.Destination.Config) != len(want) {
		t.Errorf("config %v, want %v", v.Destination.Config, want)
	}
	for k, w := range want {
		if v.Destination.Config[k] != w {
			t.Errorf("config[%s] = %v, want %v", k, v.Destination.Config[k], w)
		}
	}
	if !slices.Equal(v.Destination.SecretsSet, []string{"aws_access_key_id", "aws_secret_access_key"}) {
		t.Errorf("secrets_set %v", v.Destination.SecretsSet)
	}
	if v.Destination.Type != "s3test" || v.Destination.PluginVersion != "1.0.0" || v.Interval != "day" ||
		v.Timezone != "Europe/Paris" || v.IntervalOffset != 7200 || v.Model != "events" || v.Paused || v.EndAt != nil {
		t.Errorf("view %+v", v)
	}
	if v.StartAt == nil || !v.StartAt.Equal(time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("start_at %v", v.StartAt)
	}
	if e.ctl.called("ExportChanged") != 1 || e.ctl.changed[0] != v.ID {
		t.Errorf("ExportChanged calls %v", e.ctl.changed)
	}
	// Stored: secrets encrypted apart from the public config.
	row := e.exportRow(v.ID)
	if strings.Contains(row.Config, secretKey) || strings.Contains(row.SealedSecret, secretKey) {
		t.Errorf("a secret is stored in clear: %q / %q", row.Config, row.SealedSecret)
	}
	if row.SecretConfig["aws_secret_access_key"] != secretKey {
		t.Errorf("secret config %v", row.SecretConfig)
	}
}

// TestSecretsNeverReturned: no response of any endpoint that shows an export contains a
// secret value, and PATCH merges the config, keeping secrets that are not resent.
func TestSecretsNeverReturnedAndPatchMerges(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	e.plugin(webhookManifest)
	id := e.export("secretive")
	hook := e.must("POST", "/api/v1/batch_exports", map[string]any{"name": "hook", "interval": "every 5 minutes",
		"destination": map[string]any{"type": "webhook", "config": map[string]any{"url": "https://example.com/h", "auth_token": "hook-secret-token"}}},
		http.StatusCreated)
	noSecrets(t, "create webhook", hook.Body)
	path := "/api/v1/batch_exports/" + id

	for _, rq := range []struct{ method, path string }{
		{"GET", path}, {"GET", "/api/v1/batch_exports"}, {"GET", "/api/v1/batch_exports?destination_type=s3test"},
		{"POST", path + "/pause"}, {"POST", path + "/unpause"},
	} {
		r := e.must(rq.method, rq.path, nil, http.StatusOK)
		noSecrets(t, rq.method+" "+rq.path, r.Body)
	}

	// PATCH a public key only: secrets kept, other public keys kept.
	r := e.must("PATCH", path, map[string]any{"destination": map[string]any{"config": map[string]any{"prefix": "new/"}}}, http.StatusOK)
	noSecrets(t, "patch", r.Body)
	cfg := r.json(t)["destination"].(map[string]any)["config"].(map[string]any)
	if cfg["prefix"] != "new/" || cfg["bucket_name"] != "events" {
		t.Errorf("merged config %v", cfg)
	}
	row := e.exportRow(id)
	if row.SecretConfig["aws_access_key_id"] != secretKeyID || row.SecretConfig["aws_secret_access_key"] != secretKey {
		t.Errorf("secrets after a PATCH without them: %v", row.SecretConfig)
	}
	// Sending back the redacted placeholder keeps the stored secret; a new value replaces it.
	r = e.must("PATCH", path, map[string]any{"destination": map[string]any{"config": map[string]any{
		"aws_access_key_id": "********", "aws_secret_access_key": secretKeyNew}}}, http.StatusOK)
	noSecrets(t, "patch secret", r.Body)
	row = e.exportRow(id)
	if row.SecretConfig["aws_access_key_id"] != secretKeyID || row.SecretConfig["aws_secret_access_key"] != secretKeyNew {
		t.Errorf("secrets after rotating one: %v", row.SecretConfig)
	}
	// null unsets an optional key (its default applies again); a required one cannot be unset.
	r = e.must("PATCH", path, map[string]any{"destination": map[string]any{"config": map[string]any{"prefix": null{}}}}, http.StatusOK)
	if _, ok := r.json(t)["destination"].(map[string]any)["config"].(map[string]any)["prefix"]; ok {
		t.Errorf("prefix still set after null: %s", r.Body)
	}
	r = e.do("PATCH", path, map[string]any{"destination": map[string]any{"config": map[string]any{"aws_secret_access_key": null{}}}})
	if r.Status != 400 || !slices.Equal(r.err(t).fieldNames(), []string{"destination.config.aws_secret_access_key"}) {
		t.Errorf("unsetting a required secret: %d %s", r.Status, r.Body)
	}
	// PATCH without destination keeps config and secrets.
	e.must("PATCH", path, map[string]any{"name": "renamed"}, http.StatusOK)
	row = e.exportRow(id)
	if row.Name != "renamed" || row.SecretConfig["aws_secret_access_key"] != secretKeyNew || !strings.Contains(row.Config, `"bucket_name":"events"`) {
		t.Errorf("after rename: %+v", row)
	}
	// Changing the type starts from an empty config: the new plugin's required keys are needed.
	r = e.do("PATCH", path, map[string]any{"destination": map[string]any{"type": "webhook", "config": map[string]any{"prefix": "x"}}})
	if r.Status != 400 || !slices.Equal(r.err(t).fieldNames(), []string{"destination.config.prefix", "destination.config.url"}) {
		t.Errorf("type change with the old keys: %d %s", r.Status, r.Body)
	}
	r = e.must("PATCH", path, map[string]any{"destination": map[string]any{"type": "webhook", "config": map[string]any{"url": "https://x.example"}}}, http.StatusOK)
	noSecrets(t, "type change", r.Body)
	row = e.exportRow(id)
	if row.DestinationType != "webhook" || len(row.SecretConfig) != 0 {
		t.Errorf("after the type change: %s %v", row.DestinationType, row.SecretConfig)
	}
	// The list still shows none of the webhook's secret either.
	r = e.must("GET", "/api/v1/batch_exports", nil, http.StatusOK)
	noSecrets(t, "final list", r.Body)
	if !strings.Contains(string(r.Body), `"secrets_set":["auth_token"]`) {
		t.Errorf("the webhook's secrets_set is missing: %s", r.Body)
	}
}

func TestPatchExportValidation(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("target")
	path := "/api/v1/batch_exports/" + id
	before := e.exportRow(id)
	cases := []struct {
		name   string
		body   string
		fields []string
	}{
		{"empty body", ``, nil},
		{"malformed", `{"name": }`, nil},
		{"unknown field", `{"nmae": "x"}`, []string{"nmae"}},
		{"blank name", `{"name": ""}`, []string{"name"}},
		{"unknown interval", `{"interval": "month"}`, []string{"interval"}},
		{"offset for new interval", `{"interval": "every 5 minutes", "interval_offset": 600}`, []string{"interval_offset"}},
		{"offset alone", `{"interval_offset": 3600}`, []string{"interval_offset"}},
		{"bad timezone", `{"timezone": "UTC+2"}`, []string{"timezone"}},
		{"naive end", `{"end_at": "2026-05-01 00:00:00"}`, []string{"end_at"}},
		{"end before start", `{"start_at": "2026-05-01T00:00:00Z", "end_at": "2026-04-01T00:00:00Z"}`, []string{"end_at"}},
		{"wrong type", `{"paused": 1}`, []string{"paused"}},
		{"unknown plugin", `{"destination": {"type": "nope"}}`, []string{"destination.type"}},
		{"unknown config key", `{"destination": {"config": {"bucket": "b"}}}`, []string{"destination.config.bucket"}},
		{"config wrong type", `{"destination": {"config": {"bucket_name": 7}}}`, []string{"destination.config.bucket_name"}},
		{"valid name, bad interval", `{"name": "ok", "interval": "x"}`, []string{"interval"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.ctl.resetCalls()
			r := e.do("PATCH", path, c.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if got := r.err(t).fieldNames(); !slices.Equal(got, c.fields) {
				t.Errorf("fields %v, want %v: %s", got, c.fields, r.Body)
			}
			if e.ctl.called("ExportChanged") != 0 {
				t.Error("ExportChanged on a rejected PATCH")
			}
		})
	}
	after := e.exportRow(id)
	if !after.UpdatedAt.Equal(before.UpdatedAt) || after.Name != before.Name || after.Config != before.Config || after.Interval != before.Interval {
		t.Errorf("a rejected PATCH changed the export:\n%+v\n%+v", before, after)
	}
	// The plugin's refusal is a 422 and changes nothing either.
	r := e.do("PATCH", path, `{"destination": {"config": {"bucket_name": "refused-bucket"}}}`)
	if r.Status != 422 || r.err(t).Code != api.CodeInvalidConfig {
		t.Errorf("refused config: %d %s", r.Status, r.Body)
	}
	if got := e.exportRow(id); got.Config != before.Config {
		t.Errorf("config changed by a refused PATCH: %s", got.Config)
	}
	// Valid PATCH: clearing start_at with null, a new interval with an offset.
	e.must("PATCH", path, `{"start_at": "2026-01-01T00:00:00Z"}`, http.StatusOK)
	r = e.must("PATCH", path, `{"start_at": null, "interval": "week", "interval_offset": 86400, "timezone": "America/New_York"}`, http.StatusOK)
	m := r.json(t)
	if m["start_at"] != nil || m["interval"] != "week" || m["interval_offset"] != float64(86400) || m["timezone"] != "America/New_York" {
		t.Errorf("patched %v", m)
	}
}

func TestBadExportIDs(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("real")
	e.must("DELETE", "/api/v1/batch_exports/"+id, nil, http.StatusNoContent)
	missing := "3f1c0a52-0000-4000-8000-000000000000"
	ids := map[string]string{
		"not a uuid": "abc", "uuid without dashes": strings.ReplaceAll(missing, "-", ""),
		"braced uuid": "{" + missing + "}", "unknown uuid": missing, "deleted export": id,
		"sql-ish": "1%27%20OR%201=1",
	}
	for name, bad := range ids {
		for _, rq := range []struct{ method, suffix, body string }{
			{"GET", "", ""}, {"PATCH", "", `{"name": "x"}`}, {"DELETE", "", ""},
			{"POST", "/pause", ""}, {"POST", "/unpause", ""}, {"POST", "/test", ""},
			{"GET", "/runs", ""}, {"GET", "/logs", ""}, {"GET", "/backfills", ""},
			{"POST", "/backfills", `{"start_at": "2026-11-01T00:00:00Z", "end_at": "2026-11-02T00:00:00Z"}`},
			{"GET", "/runs/" + missing, ""}, {"GET", "/backfills/" + missing, ""},
		} {
			t.Run(name+" "+rq.method+" "+rq.suffix, func(t *testing.T) {
				r := e.do(rq.method, "/api/v1/batch_exports/"+bad+rq.suffix, rq.body)
				if r.Status != http.StatusNotFound {
					t.Fatalf("status %d, want 404: %s", r.Status, r.Body)
				}
				if ae := r.err(t); ae.Code != api.CodeNotFound {
					t.Errorf("code %q", ae.Code)
				}
			})
		}
	}
	// Bad run/backfill ids under a live export: 404 too.
	live := e.export("live")
	for _, p := range []string{"/runs/xyz", "/runs/xyz/logs", "/backfills/xyz", "/runs/" + missing + "/logs"} {
		if r := e.do("GET", "/api/v1/batch_exports/"+live+p, nil); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d", p, r.Status)
		}
	}
	for _, p := range []string{"/runs/xyz/retry", "/runs/xyz/cancel", "/backfills/xyz/cancel"} {
		if r := e.do("POST", "/api/v1/batch_exports/"+live+p, nil); r.Status != http.StatusNotFound {
			t.Errorf("%s: %d", p, r.Status)
		}
	}
}

func TestPauseUnpauseDelete(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("p")
	path := "/api/v1/batch_exports/" + id
	e.ctl.resetCalls()

	r := e.must("POST", path+"/pause", nil, http.StatusOK)
	m := r.json(t)
	if m["paused"] != true || m["last_paused_at"] == nil {
		t.Errorf("paused view %v", m)
	}
	// Pausing again is idempotent and does not reschedule.
	e.must("POST", path+"/pause", nil, http.StatusOK)
	if n := e.ctl.called("ExportChanged"); n != 1 {
		t.Errorf("ExportChanged %d times for pause + pause", n)
	}
	if got := e.must("GET", "/api/v1/batch_exports?paused=true", nil, 200).json(t)["results"].([]any); len(got) != 1 {
		t.Errorf("paused=true lists %d", len(got))
	}
	if got := e.must("GET", "/api/v1/batch_exports?paused=false", nil, 200).json(t)["results"].([]any); len(got) != 0 {
		t.Errorf("paused=false lists %d", len(got))
	}
	r = e.must("POST", path+"/unpause", nil, http.StatusOK)
	if m := r.json(t); m["paused"] != false || m["last_paused_at"] == nil {
		t.Errorf("unpaused view %v", m)
	}
	if n := e.ctl.called("ExportChanged"); n != 2 {
		t.Errorf("ExportChanged %d times", n)
	}
	// A body is not needed, but any is ignored.
	e.must("POST", path+"/pause", `{"reason": "x"}`, http.StatusOK)

	e.must("DELETE", path, nil, http.StatusNoContent)
	if n := e.ctl.called("ExportChanged"); n != 4 {
		t.Errorf("ExportChanged %d times after delete", n)
	}
	e.must("GET", path, nil, http.StatusNotFound)
	e.must("DELETE", path, nil, http.StatusNotFound)
	e.must("POST", path+"/unpause", nil, http.StatusNotFound)
	if got := e.must("GET", "/api/v1/batch_exports", nil, 200).json(t)["results"].([]any); len(got) != 0 {
		t.Errorf("a deleted export is listed: %v", got)
	}
	if _, err := e.db.GetExportIncludingDeleted(t.Context(), id); err != nil {
		t.Errorf("soft delete removed the row: %v", err)
	}
}

func TestListExports(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	e.plugin(webhookManifest)
	r := e.must("GET", "/api/v1/batch_exports", nil, http.StatusOK)
	if string(r.Body) != "{\"results\":[],\"next_cursor\":null}\n" {
		t.Errorf("empty list %s", r.Body)
	}
	e.export("a")
	e.export("b")
	e.must("POST", "/api/v1/batch_exports", map[string]any{"name": "w", "interval": "hour",
		"destination": map[string]any{"type": "webhook", "config": map[string]any{"url": "https://e.example"}}}, http.StatusCreated)
	cases := []struct {
		query string
		names []string
	}{
		{"", []string{"a", "b", "w"}},
		{"?destination_type=s3test", []string{"a", "b"}},
		{"?destination_type=webhook", []string{"w"}},
		{"?destination_type=none", nil},
		{"?paused=false", []string{"a", "b", "w"}},
	}
	for _, c := range cases {
		r := e.must("GET", "/api/v1/batch_exports"+c.query, nil, http.StatusOK)
		var l struct {
			Results []struct {
				ID, Name string
			}
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.Body, &l); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, x := range l.Results {
			names = append(names, x.Name)
		}
		if !slices.Equal(names, c.names) || l.NextCursor != nil {
			t.Errorf("%q: %v, want %v", c.query, names, c.names)
		}
	}
	if r := e.do("GET", "/api/v1/batch_exports?paused=maybe", nil); r.Status != 400 || !slices.Equal(r.err(t).fieldNames(), []string{"paused"}) {
		t.Errorf("paused=maybe: %d %s", r.Status, r.Body)
	}
}

func TestTestDestination(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	id := e.export("t")
	path := "/api/v1/batch_exports/" + id + "/test"
	r := e.must("POST", path, nil, http.StatusOK)
	if string(r.Body) != "{\"ok\":true,\"steps\":[]}\n" {
		t.Errorf("no steps: %s", r.Body)
	}
	e.ctl.report.Steps = []abi.TestStep{{Name: "connect", OK: true}, {Name: "write", OK: false, Message: "access denied"}}
	m := e.must("POST", path, nil, http.StatusOK).json(t)
	if m["ok"] != false || len(m["steps"].([]any)) != 2 {
		t.Errorf("report %v", m)
	}
}

func TestSecretsNotInStorageErrors(t *testing.T) {
	// A secret given a wrong type is reported by name, never echoed.
	e := newEnv(t)
	e.plugin(s3Manifest)
	r := e.do("POST", "/api/v1/batch_exports", with("destination.config.aws_secret_access_key", []string{secretKey}))
	if r.Status != 400 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	noSecrets(t, "bad secret type", r.Body)
}
