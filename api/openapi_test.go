package api_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/storage"
)

type openAPIDoc struct {
	OpenAPI  string                               `json:"openapi"`
	Info     map[string]any                       `json:"info"`
	Security []map[string][]string                `json:"security"`
	Paths    map[string]map[string]openAPIOp      `json:"paths"`
	Comps    map[string]map[string]map[string]any `json:"components"`
}

type openAPIOp struct {
	OperationID string                 `json:"operationId"`
	Security    *[]map[string][]string `json:"security"`
	Parameters  []map[string]any       `json:"parameters"`
	Responses   map[string]any         `json:"responses"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadSpec(t *testing.T, e *env) (openAPIDoc, map[string]any) {
	t.Helper()
	r := e.raw("GET", "/api/v1/openapi.json", "", nil) // no token needed
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc openAPIDoc
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	var raw map[string]any
	json.Unmarshal(r.Body, &raw)
	return doc, raw
}

// specPath converts ":id" to "{id}".
func specPath(p string) string {
	return regexp.MustCompile(`:([A-Za-z0-9_]+)`).ReplaceAllString(p, "{$1}")
}

// TestOpenAPIMatchesRoutes: the document is OpenAPI 3.x, and it lists exactly the
// routes registered in Echo, with the same methods, path parameters and security.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	doc, raw := loadSpec(t, e)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	if doc.Info["title"] == nil || doc.Info["version"] == nil {
		t.Errorf("info lacks title or version: %v", doc.Info)
	}
	if len(doc.Security) == 0 || doc.Comps["securitySchemes"]["bearer"]["scheme"] != "bearer" {
		t.Errorf("bearer security is not the default")
	}

	// Routes registered in Echo (every method but Echo's internal ones).
	scope := map[string]string{}
	for _, r := range e.srv.Routes() {
		scope[r.Method+" "+specPath(r.Path)] = r.Scope
	}
	echoRoutes := map[string]bool{}
	for _, r := range e.srv.Echo().Routes() {
		if r.Method == "echo_route_any" || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		key := r.Method + " " + specPath(r.Path)
		echoRoutes[key] = true
		if _, ok := scope[key]; !ok {
			t.Errorf("Echo route %s is not in Server.Routes()", key)
		}
	}
	if len(echoRoutes) != len(scope) {
		t.Errorf("Echo has %d routes, Server.Routes() %d", len(echoRoutes), len(scope))
	}
	documented := map[string]openAPIOp{}
	for path, item := range doc.Paths {
		for m, op := range item {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = op
		}
	}
	var missing, extra []string
	for k := range echoRoutes {
		if _, ok := documented[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !echoRoutes[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.json: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.json documents routes that do not exist: %v", extra)
	}

	opIDs := map[string]string{}
	paramRE := regexp.MustCompile(`\{([^}]+)\}`)
	for key, op := range documented {
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", key)
		} else if prev, dup := opIDs[op.OperationID]; dup {
			t.Errorf("operationId %s on %s and %s", op.OperationID, prev, key)
		}
		opIDs[op.OperationID] = key
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses", key)
		}
		// Public routes say security: []; the others inherit bearer.
		public := op.Security != nil && len(*op.Security) == 0
		if sc, ok := scope[key]; ok && (sc == "") != public {
			t.Errorf("%s: scope %q but documented public=%v", key, sc, public)
		}
		if sc := scope[key]; sc != "" {
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s: authenticated but no 401 response", key)
			}
			if _, ok := op.Responses["403"]; !ok && sc != storage.ScopeRead {
				t.Errorf("%s: needs %s but no 403 response", key, sc)
			}
		}
		// Path parameters: exactly those of the path, resolved through $ref.
		path := strings.SplitN(key, " ", 2)[1]
		var want []string
		for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		var got []string
		for _, p := range op.Parameters {
			p = resolve(t, raw, p)
			if p["in"] == "path" {
				got = append(got, p["name"].(string))
				if p["required"] != true {
					t.Errorf("%s: path parameter %v not required", key, p["name"])
				}
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: path parameters %v, want %v", key, got, want)
		}
		// Every response has a description (OpenAPI requires one).
		for code, resp := range op.Responses {
			if r := resolve(t, raw, resp.(map[string]any)); r["description"] == nil {
				t.Errorf("%s %s: response without a description", key, code)
			}
		}
	}
	// Every $ref in the document resolves.
	walkRefs(t, raw, raw, "#")
}

func resolve(t *testing.T, root, v map[string]any) map[string]any {
	t.Helper()
	ref, ok := v["$ref"].(string)
	if !ok {
		return v
	}
	cur := any(root)
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("$ref %s does not resolve", ref)
		}
		cur = m[part]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("$ref %s does not resolve", ref)
	}
	return m
}

func walkRefs(t *testing.T, root map[string]any, v any, at string) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			if !strings.HasPrefix(ref, "#/") {
				t.Errorf("%s: external $ref %s", at, ref)
			} else {
				resolve(t, root, x)
			}
		}
		for k, y := range x {
			walkRefs(t, root, y, at+"/"+k)
		}
	case []any:
		for i, y := range x {
			walkRefs(t, root, y, fmt.Sprintf("%s/%d", at, i))
		}
	}
}

// TestOpenAPISchemasMatchResponses compares the properties of the documented schemas
// with the keys of real responses, both ways, so that neither drifts from the other.
func TestOpenAPISchemasMatchResponses(t *testing.T) {
	e := newEnv(t)
	_, raw := loadSpec(t, e)
	schemas := raw["components"].(map[string]any)["schemas"].(map[string]any)
	props := func(name string) map[string]any {
		return schemas[name].(map[string]any)["properties"].(map[string]any)
	}
	// check compares an object's keys with schema name; optional keys may be absent.
	check := func(name string, obj map[string]any, optional ...string) {
		t.Helper()
		p := props(name)
		for k := range obj {
			if _, ok := p[k]; !ok {
				t.Errorf("schema %s lacks %q, which responses have", name, k)
			}
		}
		for k := range p {
			if _, ok := obj[k]; !ok && !slices.Contains(optional, k) {
				t.Errorf("schema %s has %q, which responses lack", name, k)
			}
		}
	}
	e.plugin(s3Manifest)
	id := e.export("spec")
	ex := e.must("GET", "/api/v1/batch_exports/"+id, nil, 200).json(t)
	check("BatchExport", ex)
	check("Destination", ex["destination"].(map[string]any))
	check("BatchExportList", e.must("GET", "/api/v1/batch_exports", nil, 200).json(t))

	run := e.run(id, time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC), storage.StatusCompleted)
	check("Run", e.must("GET", "/api/v1/batch_exports/"+id+"/runs/"+run.ID, nil, 200).json(t))
	check("RunList", e.must("GET", "/api/v1/batch_exports/"+id+"/runs", nil, 200).json(t))

	bf := e.must("POST", "/api/v1/batch_exports/"+id+"/backfills", `{"start_at": "2026-11-01T00:00:00Z", "end_at": "2026-11-01T03:00:00Z"}`, 201).json(t)
	check("Backfill", bf)
	bp := schemas["Backfill"].(map[string]any)["properties"].(map[string]any)["progress"].(map[string]any)["properties"].(map[string]any)
	for k := range bf["progress"].(map[string]any) {
		if _, ok := bp[k]; !ok {
			t.Errorf("Backfill.progress lacks %q", k)
		}
	}
	if len(bp) != len(bf["progress"].(map[string]any)) {
		t.Errorf("Backfill.progress has %d properties, responses %d", len(bp), len(bf["progress"].(map[string]any)))
	}

	id2 := run.ID
	if _, err := e.db.AppendLog(t.Context(), storage.LogEntry{ExportID: id, RunID: &id2, Message: "m"}); err != nil {
		t.Fatal(err)
	}
	logs := e.must("GET", "/api/v1/batch_exports/"+id+"/logs", nil, 200).json(t)
	check("LogList", logs)
	check("LogEntry", logs["results"].([]any)[0].(map[string]any))

	tok := e.must("POST", "/api/v1/tokens", `{"name": "n", "scopes": ["read"]}`, 201).json(t)
	check("Token", tok, "last_used_at")
	check("TokenList", e.must("GET", "/api/v1/tokens", nil, 200).json(t))

	mod := module(webhookManifest)
	body, ct := multipartBody(t, map[string][]byte{"module": mod}, nil)
	pl := e.raw("POST", "/api/v1/plugins", adminToken, body, "Content-Type", ct)
	if pl.Status != 201 {
		t.Fatalf("install: %d %s", pl.Status, pl.Body)
	}
	check("Plugin", pl.json(t), "versions")
	plugins := e.must("GET", "/api/v1/plugins", nil, 200).json(t)
	check("PluginList", plugins)
	check("Plugin", plugins["results"].([]any)[0].(map[string]any))
	check("Manifest", plugins["results"].([]any)[0].(map[string]any)["manifest"].(map[string]any), "formats")
	check("TestReport", e.must("POST", "/api/v1/batch_exports/"+id+"/test", nil, 200).json(t))

	er := e.do("GET", "/api/v1/batch_exports?paused=x", nil).json(t)
	check("ErrorEnvelope", er)
	check("Error", er["error"].(map[string]any), "exports", "exports_total")
	// A 409 for a plugin version in use carries the exports.
	inUse := e.do("DELETE", "/api/v1/plugins/s3test/versions/1.0.0", nil).json(t)
	check("Error", inUse["error"].(map[string]any), "fields")
	for _, ref := range inUse["error"].(map[string]any)["exports"].([]any) {
		check("ExportRef", ref.(map[string]any))
	}
	up := e.must("POST", "/api/v1/batch_exports/"+id+"/upgrade", `{"version": "1.0.0"}`, 200).json(t)
	check("Upgrade", up["upgrade"].(map[string]any))
	delete(up, "upgrade")
	check("BatchExport", up)
	check("Plugin", e.must("GET", "/api/v1/plugins/s3test/versions/1.0.0", nil, 200).json(t))

	// Request schemas: the fields each body accepts are documented, and no others.
	reqs := map[string][]string{
		"BatchExportCreate": {"name", "destination", "interval", "timezone", "interval_offset", "start_at", "end_at", "paused", "model", "filters", "team_id", "alert_webhook_url", "alert_format", "alert_period_seconds"},
		"BatchExportUpdate": {"name", "destination", "interval", "timezone", "interval_offset", "start_at", "end_at", "paused", "model", "filters", "team_id", "alert_webhook_url", "alert_format", "alert_period_seconds"},
		"DestinationInput":  {"type", "plugin_version", "plugin_sha256", "config"},
		"UpgradeRequest":    {"version", "sha256", "config"},
		"Filters":           {"include_events", "exclude_events", "properties"},
		"PropertyFilter":    {"key", "operator", "value"},
		"BackfillCreate":    {"start_at", "end_at"},
		"TokenCreate":       {"name", "scopes"},
	}
	for name, fields := range reqs {
		var got []string
		for k := range props(name) {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(fields)
		if !slices.Equal(got, fields) {
			t.Errorf("request schema %s: %v, want %v", name, got, fields)
		}
	}
	// Enums in the spec match what the API accepts.
	enum := func(v any) []string {
		var out []string
		for _, x := range v.(map[string]any)["enum"].([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	if got := enum(schemas["Interval"]); !slices.Equal(got, []string{"hour", "day", "week", "every 5 minutes", "every 15 minutes"}) {
		t.Errorf("Interval enum %v", got)
	}
	var statuses []string
	for _, s := range storage.AllStatuses {
		statuses = append(statuses, string(s))
	}
	if got := enum(schemas["RunStatus"]); !slices.Equal(got, statuses) {
		t.Errorf("RunStatus enum %v", got)
	}
}
