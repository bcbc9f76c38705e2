package api_test

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
)

// objManifest binds its connection-level fields to the object capability, as the
// first-party s3 plugin does: bucket, region, endpoint and keys may live on a connection;
// prefix and file_format are each export's own.
var objManifest = abi.Manifest{
	Name: "objtest", Version: "1.0.0", ABIVersion: "1.0", Description: "test object store",
	Capabilities: []string{"object"},
	Config: []abi.Field{
		{Name: "bucket_name", Type: abi.TypeString, Required: true, Binding: "object.bucket"},
		{Name: "region", Type: abi.TypeString, Default: "us-east-1", Binding: "object.region"},
		{Name: "endpoint_url", Type: abi.TypeString, Binding: "object.endpoint_url"},
		{Name: "prefix", Type: abi.TypeString},
		{Name: "file_format", Type: abi.TypeString, Enum: []string{"JSONLines", "Parquet"}, Default: "JSONLines"},
		{Name: "aws_access_key_id", Type: abi.TypeString, Required: true, Secret: true, Binding: "object.access_key_id"},
		{Name: "aws_secret_access_key", Type: abi.TypeString, Required: true, Secret: true, Binding: "object.secret_access_key"},
	},
}

const conns = "/api/v1/connections"

func connBody(name string) map[string]any {
	return map[string]any{"name": name, "type": "objtest", "config": map[string]any{
		"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:7070",
		"aws_access_key_id": secretKeyID, "aws_secret_access_key": secretKey,
	}}
}

// connection creates an objtest connection through the API and returns its id.
func (e *env) connection(name string) string {
	e.t.Helper()
	r := e.must("POST", conns, connBody(name), http.StatusCreated)
	noSecrets(e.t, "create connection", r.Body)
	return r.json(e.t)["id"].(string)
}

func exportWith(name, connID string, config map[string]any) map[string]any {
	return map[string]any{"name": name, "interval": "hour",
		"destination": map[string]any{"connection_id": connID, "config": config}}
}

// validated records the configs the plugin's validation saw.
type validated struct {
	mu   sync.Mutex
	seen []map[string]any
	sets [][]string
}

func (v *validated) hook(public map[string]any, secretsSet []string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen, v.sets = append(v.seen, public), append(v.sets, secretsSet)
	if public["bucket_name"] == "refused-bucket" {
		return api.InvalidDestination("the bucket name is reserved", "bucket_name")
	}
	return nil
}

func (v *validated) last() (map[string]any, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen[len(v.seen)-1], v.sets[len(v.sets)-1]
}

func TestConnectionCRUD(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	r := e.must("POST", conns, connBody("prod keys"), http.StatusCreated)
	noSecrets(t, "create", r.Body)
	m := r.json(t)
	id := m["id"].(string)
	if m["name"] != "prod keys" || m["type"] != "objtest" ||
		!reflect.DeepEqual(m["config"], map[string]any{"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:7070"}) ||
		!reflect.DeepEqual(m["secrets_set"], []any{"aws_access_key_id", "aws_secret_access_key"}) {
		t.Fatalf("created %v", m)
	}
	// Stored sealed, returned by no endpoint.
	cn, err := e.db.GetConnection(t.Context(), id)
	if err != nil || cn.SecretConfig["aws_secret_access_key"] != secretKey || strings.Contains(cn.SealedSecret, secretKey) {
		t.Fatalf("stored %+v (%v)", cn, err)
	}
	for _, path := range []string{conns, conns + "/" + id} {
		noSecrets(t, "GET "+path, e.must("GET", path, nil, http.StatusOK).Body)
	}

	// PATCH merges: omitted and "********" secrets are kept, a new one replaces.
	r = e.must("PATCH", conns+"/"+id, map[string]any{"name": "renamed", "config": map[string]any{
		"aws_access_key_id": "********", "aws_secret_access_key": secretKeyNew, "endpoint_url": null{}}}, http.StatusOK)
	noSecrets(t, "patch", r.Body)
	m = r.json(t)
	if m["name"] != "renamed" || !reflect.DeepEqual(m["config"], map[string]any{"region": "eu-west-1"}) {
		t.Fatalf("patched %v", m)
	}
	cn, _ = e.db.GetConnection(t.Context(), id)
	if cn.SecretConfig["aws_access_key_id"] != secretKeyID || cn.SecretConfig["aws_secret_access_key"] != secretKeyNew {
		t.Fatalf("secrets after patch: kept id %v, rotated %v", cn.SecretConfig["aws_access_key_id"] == secretKeyID, cn.SecretConfig["aws_secret_access_key"] == secretKeyNew)
	}

	// Its plugin deleted, the connection still reads (no secret), and cannot be tested.
	e.must("DELETE", "/api/v1/plugins/objtest", nil, http.StatusNoContent)
	r = e.must("GET", conns+"/"+id, nil, http.StatusOK)
	noSecrets(t, "plugin deleted", r.Body)
	if m := r.json(t); !reflect.DeepEqual(m["secrets_set"], []any{"aws_access_key_id", "aws_secret_access_key"}) || !reflect.DeepEqual(m["config"], map[string]any{"region": "eu-west-1"}) {
		t.Fatalf("without its plugin: %v", m)
	}
	e.must("POST", conns+"/"+id+"/test", nil, http.StatusConflict)

	e.must("DELETE", conns+"/"+id, nil, http.StatusNoContent)
	e.must("GET", conns+"/"+id, nil, http.StatusNotFound)
	noSecrets(t, "the API's log", e.logs.Bytes())
	e.must("DELETE", conns+"/"+id, nil, http.StatusNotFound)
	e.must("GET", conns+"/not-a-uuid", nil, http.StatusNotFound)
}

func TestConnectionValidation(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	id := e.connection("c")
	cases := []struct {
		name, method, path string
		body               any
		fields             []string
		msg                string
	}{
		{"missing name and type", "POST", conns, `{"config": {}}`, []string{"name", "type"}, "required"},
		{"unknown plugin", "POST", conns, map[string]any{"name": "x", "type": "nope"}, []string{"type"}, `unknown plugin "nope"`},
		{"unknown field", "POST", conns, map[string]any{"name": "x", "type": "objtest", "config": map[string]any{"regoin": "x"}}, []string{"config.regoin"}, `did you mean "region"`},
		{"export-level field", "POST", conns, map[string]any{"name": "x", "type": "objtest", "config": map[string]any{"prefix": "p/", "file_format": "CSV"}},
			[]string{"config.file_format", "config.prefix"}, "not a connection field"},
		{"wrong type", "POST", conns, map[string]any{"name": "x", "type": "objtest", "config": map[string]any{"aws_secret_access_key": 5}}, []string{"config.aws_secret_access_key"}, "must be a string"},
		{"unknown body key", "POST", conns, `{"name": "x", "type": "objtest", "secrets": {}}`, []string{"secrets"}, "unknown field"},
		{"type change", "PATCH", conns + "/" + id, map[string]any{"type": "s3test"}, []string{"type"}, "cannot change"},
		{"blank name", "PATCH", conns + "/" + id, map[string]any{"name": " "}, []string{"name"}, "must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			ae := r.err(t)
			if got := ae.fieldNames(); !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("fields %v, want %v: %s", got, tc.fields, r.Body)
			}
			if !strings.Contains(ae.text(), tc.msg) {
				t.Fatalf("error %q lacks %q", ae.text(), tc.msg)
			}
			noSecrets(t, tc.name, r.Body)
		})
	}
	// Nothing refused was stored.
	if r := e.must("GET", conns, nil, http.StatusOK).json(t); len(r["results"].([]any)) != 1 {
		t.Fatalf("connections %v", r)
	}
}

func TestConnectionPaging(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	e.plugin(s3Manifest)
	var want []string
	for i := range 5 {
		want = append(want, e.connection(fmt.Sprintf("c%d", i)))
	}
	other := e.must("POST", conns, map[string]any{"name": "s3", "type": "s3test", "config": map[string]any{"aws_access_key_id": secretKeyID}}, http.StatusCreated).json(t)["id"].(string)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := conns + "?type=objtest&limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		m := e.must("GET", path, nil, http.StatusOK).json(t)
		for _, x := range m["results"].([]any) {
			got = append(got, x.(map[string]any)["id"].(string))
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages, want 3", pages+1)
			}
			break
		}
		cursor = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}
	all := e.must("GET", conns+"?limit=500", nil, http.StatusOK).json(t)["results"].([]any)
	if len(all) != 6 || all[5].(map[string]any)["id"] != other {
		t.Fatalf("unfiltered list %v", all)
	}
	for _, bad := range []string{"?limit=0", "?cursor=zz", "?limit=501"} {
		if r := e.do("GET", conns+bad, nil); r.Status != http.StatusBadRequest {
			t.Errorf("%s: status %d", bad, r.Status)
		}
	}
}

// An export that uses a connection: its type comes from the connection, the plugin
// validates the connection's fields under the export's own, the export's view shows only
// its own config, and the rules name the field at fault.
func TestExportWithConnection(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	e.plugin(s3Manifest)
	v := &validated{}
	e.ctl.validate = v.hook
	cid := e.connection("shared")
	r := e.must("POST", "/api/v1/batch_exports", exportWith("a", cid, map[string]any{"bucket_name": "events-a", "prefix": "a/"}), http.StatusCreated)
	noSecrets(t, "create export", r.Body)
	m := r.json(t)
	exportID := m["id"].(string)
	d := m["destination"].(map[string]any)
	if d["type"] != "objtest" || d["connection_id"] != cid ||
		!reflect.DeepEqual(d["config"], map[string]any{"bucket_name": "events-a", "prefix": "a/", "file_format": "JSONLines"}) ||
		!reflect.DeepEqual(d["secrets_set"], []any{}) {
		t.Fatalf("export destination %v", d)
	}
	pub, set := v.last()
	wantPub := map[string]any{"bucket_name": "events-a", "prefix": "a/", "file_format": "JSONLines", "region": "eu-west-1", "endpoint_url": "http://127.0.0.1:7070"}
	if !reflect.DeepEqual(pub, wantPub) || !reflect.DeepEqual(set, []string{"aws_access_key_id", "aws_secret_access_key"}) {
		t.Fatalf("validated %v %v, want the connection's fields under the export's", pub, set)
	}
	// The export overrides a connection field.
	e.must("PATCH", "/api/v1/batch_exports/"+exportID, map[string]any{"destination": map[string]any{"config": map[string]any{"region": "ap-south-1"}}}, http.StatusOK)
	if pub, _ := v.last(); pub["region"] != "ap-south-1" || pub["endpoint_url"] != "http://127.0.0.1:7070" {
		t.Fatalf("override: validated %v", pub)
	}
	if x := e.exportRow(exportID); x.ConnectionID == nil || *x.ConnectionID != cid || len(x.SecretConfig) != 0 {
		t.Fatalf("stored export: connection %v, own secrets %d", x.ConnectionID, len(x.SecretConfig))
	}

	bad := []struct {
		name   string
		body   map[string]any
		fields []string
		msg    string
	}{
		{"missing required", exportWith("x", cid, map[string]any{"prefix": "p"}), []string{"destination.config.bucket_name"}, "required: set it on the connection or on the export"},
		{"secret conflicts", exportWith("x", cid, map[string]any{"bucket_name": "b", "aws_secret_access_key": secretKey}), []string{"destination.config.aws_secret_access_key"}, "conflicts with the connection"},
		{"unknown field", exportWith("x", cid, map[string]any{"bucket_name": "b", "prefx": "p"}), []string{"destination.config.prefx"}, `did you mean "prefix"`},
		{"type conflicts", map[string]any{"name": "x", "interval": "hour", "destination": map[string]any{"type": "s3test", "connection_id": cid, "config": map[string]any{"bucket_name": "b"}}},
			[]string{"destination.connection_id"}, `the connection is for plugin "objtest", not "s3test"`},
		{"unknown connection", exportWith("x", "00000000-0000-4000-8000-000000000000", map[string]any{"bucket_name": "b"}), []string{"destination.connection_id", "destination.type"}, "unknown connection"},
		{"bad connection id", exportWith("x", "nope", map[string]any{"bucket_name": "b"}), []string{"destination.connection_id", "destination.type"}, "must be a connection's id"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/batch_exports", tc.body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			ae := r.err(t)
			if got := ae.fieldNames(); !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("fields %v, want %v: %s", got, tc.fields, r.Body)
			}
			if !strings.Contains(ae.text(), tc.msg) {
				t.Fatalf("error %q lacks %q", ae.text(), tc.msg)
			}
			noSecrets(t, tc.name, r.Body)
		})
	}
	if n := e.exportCount(); n != 1 {
		t.Fatalf("%d exports stored, want 1", n)
	}
	noSecrets(t, "the API's log", e.logs.Bytes())
	// The plugin's refusal of the effective config is a 422 as usual.
	if r := e.do("POST", "/api/v1/batch_exports", exportWith("x", cid, map[string]any{"bucket_name": "refused-bucket"})); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("refused bucket: %d %s", r.Status, r.Body)
	}
}

// Attaching a connection to an export that held its own secrets drops them, and its own
// values of connection fields (defaults included); detaching asks for the secrets again.
func TestAttachDetachConnection(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	v := &validated{}
	e.ctl.validate = v.hook
	cid := e.connection("shared")
	r := e.must("POST", "/api/v1/batch_exports", map[string]any{"name": "own", "interval": "hour", "destination": map[string]any{"type": "objtest",
		"config": map[string]any{"bucket_name": "b", "prefix": "p/", "aws_access_key_id": "own-key-id", "aws_secret_access_key": "own-key"}}}, http.StatusCreated)
	id := r.json(t)["id"].(string)
	e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"connection_id": cid}}, http.StatusOK)
	x := e.exportRow(id)
	if x.ConnectionID == nil || len(x.SecretConfig) != 0 || strings.Contains(x.Config, "region") || !strings.Contains(x.Config, `"prefix":"p/"`) {
		t.Fatalf("attached: connection %v, secrets %d, config %s", x.ConnectionID, len(x.SecretConfig), x.Config)
	}
	// The export's stored default region gave way to the connection's; its bucket (a field
	// the connection does not hold) stays.
	if pub, set := v.last(); pub["region"] != "eu-west-1" || pub["bucket_name"] != "b" || len(set) != 2 {
		t.Fatalf("validated after attach %v %v", pub, set)
	}
	// Detaching without secrets: named.
	r = e.do("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"connection_id": null{}, "config": map[string]any{"bucket_name": "b"}}})
	if r.Status != http.StatusBadRequest || !slices.Equal(r.err(t).fieldNames(), []string{"destination.config.aws_access_key_id", "destination.config.aws_secret_access_key"}) {
		t.Fatalf("detach without secrets: %d %s", r.Status, r.Body)
	}
	e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"connection_id": null{}, "config": map[string]any{
		"bucket_name": "b", "aws_access_key_id": "k", "aws_secret_access_key": "s"}}}, http.StatusOK)
	if x := e.exportRow(id); x.ConnectionID != nil || x.SecretConfig["aws_secret_access_key"] != "s" {
		t.Fatalf("detached: %v %v", x.ConnectionID, x.SecretConfig)
	}
}

// A connection in use cannot be deleted: 409 listing the live exports that use it.
func TestDeleteConnectionInUse(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	cid := e.connection("shared")
	a := e.must("POST", "/api/v1/batch_exports", exportWith("a", cid, map[string]any{"bucket_name": "a"}), http.StatusCreated).json(t)["id"].(string)
	b := e.must("POST", "/api/v1/batch_exports", exportWith("b", cid, map[string]any{"bucket_name": "b"}), http.StatusCreated).json(t)["id"].(string)
	r := e.do("DELETE", conns+"/"+cid, nil)
	if r.Status != http.StatusConflict {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	ae := r.err(t)
	if ae.Code != api.CodeConflict || len(ae.Exports) != 2 || ae.Exports[0].ID != a || ae.Exports[1].Name != "b" || !strings.Contains(ae.Message, "2 export(s)") {
		t.Fatalf("error %+v", ae)
	}
	e.must("DELETE", "/api/v1/batch_exports/"+a, nil, http.StatusNoContent)
	if ae := e.do("DELETE", conns+"/"+cid, nil).err(t); len(ae.Exports) != 1 || ae.Exports[0].ID != b {
		t.Fatalf("after deleting a: %+v", ae)
	}
	e.must("DELETE", "/api/v1/batch_exports/"+b, nil, http.StatusNoContent)
	e.must("DELETE", conns+"/"+cid, nil, http.StatusNoContent)
}

// A PATCH that would leave an export unable to run (a required field gone, a config its
// plugin refuses) changes nothing and names the export.
func TestPatchConnectionChecksExports(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	v := &validated{}
	e.ctl.validate = v.hook
	r := e.must("POST", conns, map[string]any{"name": "c", "type": "objtest", "config": map[string]any{
		"bucket_name": "from-connection", "aws_access_key_id": secretKeyID, "aws_secret_access_key": secretKey}}, http.StatusCreated)
	cid := r.json(t)["id"].(string)
	x := e.must("POST", "/api/v1/batch_exports", exportWith("x", cid, map[string]any{}), http.StatusCreated).json(t)["id"].(string)

	r = e.do("PATCH", conns+"/"+cid, map[string]any{"config": map[string]any{"bucket_name": null{}}})
	if r.Status != http.StatusBadRequest || !slices.Equal(r.err(t).fieldNames(), []string{"config.bucket_name"}) || !strings.Contains(r.err(t).text(), "export "+x) {
		t.Fatalf("unset a field the export needs: %d %s", r.Status, r.Body)
	}
	r = e.do("PATCH", conns+"/"+cid, map[string]any{"config": map[string]any{"bucket_name": "refused-bucket"}})
	if r.Status != http.StatusUnprocessableEntity || !slices.Equal(r.err(t).fieldNames(), []string{"config.bucket_name"}) || !strings.Contains(r.err(t).Message, "export "+x) {
		t.Fatalf("a bucket the plugin refuses: %d %s", r.Status, r.Body)
	}
	if cn, _ := e.db.GetConnection(t.Context(), cid); !strings.Contains(cn.Config, "from-connection") {
		t.Fatalf("a refused PATCH changed the connection: %s", cn.Config)
	}
	// Rotating the secret checks the exports too, and passes.
	e.must("PATCH", conns+"/"+cid, map[string]any{"config": map[string]any{"aws_secret_access_key": secretKeyNew}}, http.StatusOK)
	if cn, _ := e.db.GetConnection(t.Context(), cid); cn.SecretConfig["aws_secret_access_key"] != secretKeyNew {
		t.Fatal("not rotated")
	}
}

// POST /connections/{id}/test hands the plugin the connection's fields with the body's
// export-level ones; a missing required field is named before the plugin runs.
func TestTestConnection(t *testing.T) {
	e := newEnv(t)
	e.plugin(objManifest)
	cid := e.connection("c")
	path := conns + "/" + cid + "/test"
	r := e.do("POST", path, nil)
	if r.Status != http.StatusBadRequest || !slices.Equal(r.err(t).fieldNames(), []string{"config.bucket_name"}) {
		t.Fatalf("without a bucket: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", path, map[string]any{"config": map[string]any{"bucket_name": "b", "aws_secret_access_key": "x"}}); r.Status != http.StatusBadRequest {
		t.Fatalf("a secret in the body: %d %s", r.Status, r.Body)
	}
	if n := e.ctl.called("TestConnection"); n != 0 {
		t.Fatalf("the plugin ran %d times on bad input", n)
	}
	e.ctl.report.Steps = []abi.TestStep{{Name: "write", OK: false, Message: "access denied"}}
	m := e.must("POST", path, map[string]any{"config": map[string]any{"bucket_name": "b"}}, http.StatusOK).json(t)
	if m["ok"] != false || len(m["steps"].([]any)) != 1 {
		t.Fatalf("report %v", m)
	}
	cfg := e.ctl.tested[0]
	if cfg.Public["bucket_name"] != "b" || cfg.Public["region"] != "eu-west-1" || cfg.Public["file_format"] != "JSONLines" || cfg.Secret["aws_secret_access_key"] != secretKey {
		t.Fatalf("tested with public %v, secret keys %d", cfg.Public, len(cfg.Secret))
	}
	e.must("POST", conns+"/00000000-0000-4000-8000-000000000000/test", nil, http.StatusNotFound)
}
