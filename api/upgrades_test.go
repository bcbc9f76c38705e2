package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/storage"
)

// s3Version stores an installed version of s3test: v2 drops "prefix" and adds a required
// "storage_class" without a default.
func (e *env) s3Version(version string, sha byte, at time.Time) storage.Plugin {
	e.t.Helper()
	m := s3Manifest
	m.Version = version
	if strings.HasPrefix(version, "2.") {
		m.Config = nil
		for _, f := range s3Manifest.Config {
			if f.Name != "prefix" {
				m.Config = append(m.Config, f)
			}
		}
		m.Config = append(m.Config, abi.Field{Name: "storage_class", Type: abi.TypeString, Required: true})
	}
	b, _ := json.Marshal(m)
	p, err := e.db.CreatePlugin(context.Background(), storage.Plugin{Name: m.Name, Version: m.Version, ABIVersion: m.ABIVersion,
		SHA256: strings.Repeat(string(sha), 64), Manifest: string(b), Capabilities: m.Capabilities, CreatedAt: at})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// s3BodyV2 is a valid create body for s3test 2.0.0.
func s3BodyV2(name string) map[string]any {
	b := s3Body(name)
	cfg := b["destination"].(map[string]any)["config"].(map[string]any)
	delete(cfg, "prefix")
	cfg["storage_class"] = "STANDARD"
	return b
}

type pinnedExport struct {
	ID          string
	Destination struct {
		PluginVersion string         `json:"plugin_version"`
		PluginSHA256  string         `json:"plugin_sha256"`
		Config        map[string]any `json:"config"`
		SecretsSet    []string       `json:"secrets_set"`
	}
	Upgrade *struct {
		From, To          struct{ Version, SHA256 string }
		DroppedConfigKeys []string `json:"dropped_config_keys"`
	}
}

func (r resp) export(t *testing.T) pinnedExport {
	t.Helper()
	var x pinnedExport
	if err := json.Unmarshal(r.Body, &x); err != nil {
		t.Fatalf("%v: %s", err, r.Body)
	}
	return x
}

func (e *env) pinOf(id string) (string, string) {
	e.t.Helper()
	x := e.must("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK).export(e.t)
	return x.Destination.PluginVersion, x.Destination.PluginSHA256
}

// TestExportPinsAVersion: an export pins the version it was created with; an update of its
// config keeps the pin even when a newer version is installed; an upgrade checks the config
// against the new version's manifest and its plugin before it repins, naming the field it
// refuses and changing nothing then.
func TestExportPinsAVersion(t *testing.T) {
	e := newEnv(t)
	v1 := e.s3Version("1.0.0", 'a', now.Add(-time.Hour))
	v2 := e.s3Version("2.0.0", 'b', now)

	body := s3Body("pinned")
	body["destination"].(map[string]any)["plugin_version"] = "1.0.0"
	x := e.must("POST", "/api/v1/batch_exports", body, http.StatusCreated).export(t)
	if x.Destination.PluginVersion != "1.0.0" || x.Destination.PluginSHA256 != v1.SHA256 {
		t.Fatalf("created with plugin_version 1.0.0, pins %+v", x.Destination)
	}
	id := x.ID
	// Without a version, a new export pins the latest installed one.
	latest := e.must("POST", "/api/v1/batch_exports", s3BodyV2("latest"), http.StatusCreated).export(t)
	if latest.Destination.PluginSHA256 != v2.SHA256 {
		t.Errorf("created without a version, pins %+v, want 2.0.0", latest.Destination)
	}

	// A config change through PATCH does not move the export to the newer version.
	e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"config": map[string]any{"prefix": "p2/"}}}, http.StatusOK)
	if v, sha := e.pinOf(id); v != "1.0.0" || sha != v1.SHA256 {
		t.Fatalf("after a config PATCH the export pins %s %s, want 1.0.0", v, sha)
	}

	cases := []struct {
		name   string
		body   any
		status int
		field  string
		text   string
	}{
		{"the new version requires a key the config lacks", map[string]any{"version": "2.0.0"}, http.StatusBadRequest, "destination.config.storage_class", "required"},
		{"the new version's plugin refuses the config", map[string]any{"version": "2.0.0", "config": map[string]any{"storage_class": "GLACIER"}}, http.StatusUnprocessableEntity, "destination.config.storage_class", "not allowed"},
		{"a value of the wrong type", map[string]any{"version": "2.0.0", "config": map[string]any{"storage_class": 5}}, http.StatusBadRequest, "destination.config.storage_class", "string"},
		{"no such version", map[string]any{"version": "3.0.0"}, http.StatusBadRequest, "version", "installed: 2.0.0"},
		{"no such module", map[string]any{"sha256": strings.Repeat("c", 64)}, http.StatusBadRequest, "sha256", "has no installed version"},
		{"version and module disagree", map[string]any{"version": "2.0.0", "sha256": v1.SHA256}, http.StatusBadRequest, "version", "has no installed version"},
		{"an unknown body key", map[string]any{"versoin": "2.0.0"}, http.StatusBadRequest, "versoin", ""},
	}
	e.ctl.validate = func(public map[string]any, _ []string) error {
		if public["storage_class"] == "GLACIER" {
			return api.InvalidDestination("storage class GLACIER is not allowed", "storage_class")
		}
		return nil
	}
	for _, c := range cases {
		r := e.do("POST", "/api/v1/batch_exports/"+id+"/upgrade", c.body)
		if r.Status != c.status {
			t.Errorf("%s: HTTP %d, want %d: %s", c.name, r.Status, c.status, r.Body)
			continue
		}
		ae := r.err(t)
		if !slices.Contains(ae.fieldNames(), c.field) || !strings.Contains(ae.text(), c.text) {
			t.Errorf("%s: error %s, want field %s mentioning %q", c.name, r.Body, c.field, c.text)
		}
		if v, sha := e.pinOf(id); v != "1.0.0" || sha != v1.SHA256 {
			t.Fatalf("%s: a refused upgrade changed the pin to %s %s", c.name, v, sha)
		}
	}

	// The upgrade with the key the new version needs: repinned, "prefix" (not in v2) dropped,
	// the secrets kept.
	x = e.must("POST", "/api/v1/batch_exports/"+id+"/upgrade", map[string]any{"version": "2.0.0", "config": map[string]any{"storage_class": "STANDARD"}}, http.StatusOK).export(t)
	if x.Upgrade == nil || x.Upgrade.From.Version != "1.0.0" || x.Upgrade.From.SHA256 != v1.SHA256 || x.Upgrade.To.Version != "2.0.0" || x.Upgrade.To.SHA256 != v2.SHA256 ||
		!slices.Equal(x.Upgrade.DroppedConfigKeys, []string{"prefix"}) {
		t.Fatalf("upgrade answer: %+v", x.Upgrade)
	}
	if x.Destination.PluginSHA256 != v2.SHA256 || x.Destination.Config["storage_class"] != "STANDARD" || x.Destination.Config["prefix"] != nil ||
		!slices.Equal(x.Destination.SecretsSet, []string{"aws_access_key_id", "aws_secret_access_key"}) {
		t.Fatalf("upgraded export: %+v", x.Destination)
	}
	if row := e.exportRow(id); row.PluginID != v2.ID || row.SecretConfig["aws_secret_access_key"] != secretKey {
		t.Fatalf("stored export: plugin %s, secrets %v", row.PluginID, row.SecretConfig)
	}
	logs := e.must("GET", "/api/v1/batch_exports/"+id+"/logs", nil, http.StatusOK)
	if !strings.Contains(string(logs.Body), "upgraded from 1.0.0") || !strings.Contains(string(logs.Body), "removed: prefix") {
		t.Errorf("the export's log does not record the upgrade: %s", logs.Body)
	}
	// Back to 1.0.0 by module, through PATCH: storage_class is not v1's, so it goes.
	e.must("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"plugin_sha256": v1.SHA256}}, http.StatusOK)
	if v, _ := e.pinOf(id); v != "1.0.0" {
		t.Fatalf("PATCH plugin_sha256 pins %s, want 1.0.0", v)
	}
	// An empty body upgrades to the latest installed version.
	e.must("POST", "/api/v1/batch_exports/"+id+"/upgrade", map[string]any{"config": map[string]any{"storage_class": "STANDARD"}}, http.StatusOK)
	if v, _ := e.pinOf(id); v != "2.0.0" {
		t.Fatalf("upgrade without a version pins %s, want the latest, 2.0.0", v)
	}
	r := e.do("PATCH", "/api/v1/batch_exports/"+id, map[string]any{"destination": map[string]any{"plugin_version": "9"}})
	if r.Status != http.StatusBadRequest || !slices.Contains(r.err(t).fieldNames(), "destination.plugin_version") {
		t.Errorf("PATCH to an unknown version: %d %s", r.Status, r.Body)
	}
	e.must("POST", "/api/v1/batch_exports/00000000-0000-0000-0000-000000000000/upgrade", nil, http.StatusNotFound)
	read := e.tokenWith("read")
	if r := e.as(read, "POST", "/api/v1/batch_exports/"+id+"/upgrade", nil); r.Status != http.StatusForbidden {
		t.Errorf("upgrade with a read token: %d", r.Status)
	}
}

func (e *env) tokenWith(scopes ...string) string {
	_, plain := e.token(scopes...)
	return plain
}

// TestPluginVersionInUse: a version that live exports pin cannot be deleted: 409 naming
// them (the first page, more than the default page size here, and their number, with the
// query that pages through all of them); once they are repinned it can, and the other
// version stays.
func TestPluginVersionInUse(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBodyBytes = 1 << 20 })
	v1 := e.s3Version("1.0.0", 'a', now.Add(-time.Hour))
	v2 := e.s3Version("2.0.0", 'b', now)
	const n = 130 // more than a page of 100
	var ids []string
	for i := range n {
		body := s3Body(fmt.Sprintf("user-%03d", i))
		body["destination"].(map[string]any)["plugin_version"] = "1.0.0"
		ids = append(ids, e.must("POST", "/api/v1/batch_exports", body, http.StatusCreated).export(t).ID)
	}
	e.must("POST", "/api/v1/batch_exports", s3BodyV2("on-v2-already"), http.StatusCreated) // no version: the latest, 2.0.0

	r := e.do("DELETE", "/api/v1/plugins/s3test/versions/1.0.0", nil)
	if r.Status != http.StatusConflict {
		t.Fatalf("delete a version in use: %d %s", r.Status, r.Body)
	}
	ae := r.err(t)
	if ae.ExportsTotal != n || len(ae.Exports) != 100 || ae.Exports[0].ID != ids[0] || ae.Exports[0].Name != "user-000" ||
		!strings.Contains(ae.Message, "plugin_sha256="+v1.SHA256) {
		t.Fatalf("409: total %d, %d listed, first %+v: %s", ae.ExportsTotal, len(ae.Exports), ae.Exports[0], ae.Message)
	}
	// The list query the message names pages through every one of them.
	var paged []string
	path := "/api/v1/batch_exports?destination_type=s3test&plugin_sha256=" + v1.SHA256
	for next := ""; ; {
		page := e.must("GET", path+next, nil, http.StatusOK)
		var l struct {
			Results    []pinnedExport
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(page.Body, &l); err != nil {
			t.Fatal(err)
		}
		for _, x := range l.Results {
			paged = append(paged, x.ID)
		}
		if l.NextCursor == nil {
			break
		}
		next = "&cursor=" + *l.NextCursor
	}
	if !slices.Equal(paged, ids) {
		t.Fatalf("paging the exports pinned to 1.0.0 found %d, want the %d", len(paged), n)
	}
	if got := e.must("GET", "/api/v1/batch_exports?plugin_version=2.0.0", nil, http.StatusOK); strings.Count(string(got.Body), `"plugin_version":"2.0.0"`) != 1 {
		t.Errorf("exports pinned to 2.0.0: %s", got.Body)
	}
	pl := e.must("GET", "/api/v1/plugins/s3test", nil, http.StatusOK)
	var view struct {
		Versions []struct {
			Version string
			Exports int64
		}
	}
	if err := json.Unmarshal(pl.Body, &view); err != nil || len(view.Versions) != 2 || view.Versions[0].Exports != 1 || view.Versions[1].Exports != n {
		t.Errorf("versions: %s", pl.Body)
	}
	// Deleting the whole plugin is refused the same way, counting every version's exports.
	if r := e.do("DELETE", "/api/v1/plugins/s3test", nil); r.Status != http.StatusConflict || r.err(t).ExportsTotal != n+1 {
		t.Errorf("delete every version: %d %s", r.Status, r.Body)
	}

	for _, id := range ids {
		e.must("POST", "/api/v1/batch_exports/"+id+"/upgrade", map[string]any{"version": "2.0.0", "config": map[string]any{"storage_class": "STANDARD"}}, http.StatusOK)
	}
	e.must("DELETE", "/api/v1/plugins/s3test/versions/1.0.0", nil, http.StatusNoContent)
	e.must("GET", "/api/v1/plugins/s3test/versions/1.0.0", nil, http.StatusNotFound)
	e.must("DELETE", "/api/v1/plugins/s3test/versions/1.0.0", nil, http.StatusNotFound)
	got := e.must("GET", "/api/v1/plugins/s3test/versions/2.0.0", nil, http.StatusOK).json(t)
	if got["sha256"] != v2.SHA256 {
		t.Errorf("the remaining version: %v", got)
	}
	if _, err := e.db.GetPlugin(context.Background(), v1.ID); err == nil {
		t.Error("the deleted version is still stored")
	}
	write := e.tokenWith("write")
	if r := e.as(write, "DELETE", "/api/v1/plugins/s3test/versions/2.0.0", nil); r.Status != http.StatusForbidden {
		t.Errorf("delete a version with a write token: %d", r.Status)
	}
}
