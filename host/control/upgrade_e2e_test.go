package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildVersioned builds testdata/versioned as a plugin of this version; partition
// "required" adds a required config key to its manifest.
func buildVersioned(t *testing.T, version, partition string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "versioned-"+version+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath",
		"-ldflags", "-X main.version="+version+" -X main.partition="+partition, "-o", out, "./testdata/versioned")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the versioned test plugin %s: %v\n%s", version, err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func TestUpgradeEndToEnd(t *testing.T) { exerciseUpgrade(t, newEnv(t, "")) }

func TestUpgradeEndToEndPostgres(t *testing.T) {
	url := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("SLUICE_TEST_POSTGRES_URL is not set (eval \"$(bash .ci/services/postgres.sh)\")")
	}
	exerciseUpgrade(t, newEnv(t, freshDatabaseNamed(t, url, "upgrades_e2e")))
}

type pinnedRun struct {
	run
	PluginVersion string `json:"plugin_version"`
	PluginSHA256  string `json:"plugin_sha256"`
}

// exerciseUpgrade, on a whole host through its API: two versions of one plugin installed
// side by side; an export pinned to v1 runs v1's module; an upgrade to v2, whose manifest
// requires a key the export lacks, is refused naming it, and so is a value v2's own
// sluice_validate refuses; v1 cannot be deleted while pinned (409 naming the export); the
// upgrade with the key repins, and the next run (and a retried old one) runs v2's module;
// then v1 is deleted.
func exerciseUpgrade(t *testing.T, e *env) {
	v1 := buildVersioned(t, "1.0.0", "")
	v2 := buildVersioned(t, "2.0.0", "required")
	var sha [2]string
	for i, wasm := range [][]byte{v1, v2} {
		code, body := e.install(fmt.Sprintf("versioned-%d.wasm", i+1), wasm, "object")
		var p struct{ Version, SHA256 string }
		_ = json.Unmarshal([]byte(body), &p)
		if code != http.StatusCreated || p.Version != fmt.Sprintf("%d.0.0", i+1) {
			t.Fatalf("install v%d: HTTP %d %s", i+1, code, body)
		}
		sha[i] = p.SHA256
	}
	if sha[0] == sha[1] {
		t.Fatal("the two builds have one sha256")
	}
	pl := e.do("GET", "/api/v1/plugins/versioned", nil, http.StatusOK)
	if vs := pl["versions"].([]any); len(vs) != 2 {
		t.Fatalf("installing v2 did not keep v1: %v", vs)
	}

	out := e.do("POST", "/api/v1/batch_exports", map[string]any{"name": "pinned", "interval": "hour",
		"destination": map[string]any{"type": "versioned", "plugin_version": "1.0.0", "config": map[string]any{"bucket_name": "upg", "endpoint_url": "local"}}}, http.StatusCreated)
	id := out["id"].(string)
	end := t0.Truncate(time.Hour)
	backfill := func(from, to time.Time) {
		e.do("POST", "/api/v1/batch_exports/"+id+"/backfills", map[string]any{"start_at": from.Format(time.RFC3339), "end_at": to.Format(time.RFC3339)}, http.StatusCreated)
	}
	pinned := func() []pinnedRun {
		raw := e.do("GET", "/api/v1/batch_exports/"+id+"/runs", nil, http.StatusOK)
		b, _ := json.Marshal(raw["results"])
		var rs []pinnedRun
		if err := json.Unmarshal(b, &rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	backfill(end.Add(-3*time.Hour), end.Add(-2*time.Hour))
	e.waitRuns(id, "the run on v1", allFinished(1))
	first := pinned()[0]
	if first.Status != "Completed" || first.PluginVersion != "1.0.0" || first.PluginSHA256 != sha[0] {
		t.Fatalf("the run on v1: %+v", first)
	}
	e.checkObject(t, "1.0.0", first)

	upgrade := func(body map[string]any, want int) map[string]any {
		return e.do("POST", "/api/v1/batch_exports/"+id+"/upgrade", body, want)
	}
	fieldNamed := func(out map[string]any, field string) bool {
		fs, _ := out["error"].(map[string]any)["fields"].([]any)
		for _, f := range fs {
			if f.(map[string]any)["field"] == field {
				return true
			}
		}
		return false
	}
	if out := upgrade(map[string]any{"version": "2.0.0"}, http.StatusBadRequest); !fieldNamed(out, "destination.config.partition") {
		t.Errorf("upgrade without the key v2 requires: %v", out)
	}
	if out := upgrade(map[string]any{"version": "2.0.0", "config": map[string]any{"partition": "forbidden"}}, http.StatusUnprocessableEntity); !fieldNamed(out, "destination.config.partition") {
		t.Errorf("upgrade with a value v2's sluice_validate refuses: %v", out)
	}
	got := e.do("GET", "/api/v1/batch_exports/"+id, nil, http.StatusOK)["destination"].(map[string]any)
	if got["plugin_sha256"] != sha[0] {
		t.Fatalf("refused upgrades moved the pin: %v", got)
	}
	conflict := e.do("DELETE", "/api/v1/plugins/versioned/versions/1.0.0", nil, http.StatusConflict)["error"].(map[string]any)
	if refs, _ := conflict["exports"].([]any); len(refs) != 1 || refs[0].(map[string]any)["id"] != id {
		t.Fatalf("409 for v1 in use: %v", conflict)
	}

	up := upgrade(map[string]any{"version": "2.0.0", "config": map[string]any{"partition": "hourly"}}, http.StatusOK)
	if up["destination"].(map[string]any)["plugin_sha256"] != sha[1] {
		t.Fatalf("upgrade: %v", up)
	}
	backfill(end.Add(-2*time.Hour), end.Add(-time.Hour))
	e.waitRuns(id, "the run on v2", allFinished(2))
	rs := pinned()
	next := rs[0] // newest interval first
	if next.Status != "Completed" || next.PluginVersion != "2.0.0" || next.PluginSHA256 != sha[1] {
		t.Fatalf("the run after the upgrade: %+v", next)
	}
	e.checkObject(t, "2.0.0", next)
	if old := rs[1]; old.PluginSHA256 != sha[0] {
		t.Errorf("the run before the upgrade now reads %s", old.PluginSHA256)
	}
	// A retried run is a new attempt: it runs the module pinned now, and says so.
	e.do("POST", "/api/v1/batch_exports/"+id+"/runs/"+first.ID+"/retry", nil, http.StatusAccepted)
	e.waitRuns(id, "the retried run", func(rs []run) bool {
		for _, r := range rs {
			if r.ID == first.ID {
				return r.Status == "Completed" && r.Attempt == first.Attempt+1
			}
		}
		return false
	})
	for _, r := range pinned() {
		if r.ID == first.ID && r.PluginSHA256 != sha[1] {
			t.Errorf("the retried run ran %s, want v2's module", r.PluginSHA256)
		}
	}

	e.do("DELETE", "/api/v1/plugins/versioned/versions/1.0.0", nil, http.StatusNoContent)
	// This host ran v1: it releases v1's module, and only that.
	if n, err := e.host.UnloadDeletedPlugins(context.Background()); n != 1 || err != nil {
		t.Errorf("unloading the deleted v1: %d released, %v", n, err)
	}
	if n, err := e.host.UnloadDeletedPlugins(context.Background()); n != 0 || err != nil {
		t.Errorf("a second sweep: %d released, %v", n, err)
	}
	// v2 stays loaded and usable: the export's destination test runs on it.
	if rep := e.do("POST", "/api/v1/batch_exports/"+id+"/test", nil, http.StatusOK); rep["steps"] == nil {
		t.Errorf("test after the sweep: %v", rep)
	}
	vs := e.do("GET", "/api/v1/plugins/versioned", nil, http.StatusOK)["versions"].([]any)
	if len(vs) != 1 || vs[0].(map[string]any)["sha256"] != sha[1] {
		t.Fatalf("after deleting v1: %v", vs)
	}
	// A pin that disagrees with its plugin row (a database edited by hand) fails the run
	// rather than run another module.
	forged := strings.Repeat("f", 64)
	if _, err := e.host.DB().SQL().Exec(fmt.Sprintf("UPDATE batch_exports SET plugin_sha256 = '%s' WHERE id = '%s'", forged, id)); err != nil {
		t.Fatal(err)
	}
	backfill(end.Add(-4*time.Hour), end.Add(-3*time.Hour))
	e.waitRuns(id, "the run with a forged pin", allFinished(3))
	for _, r := range pinned() {
		if r.IntervalEnd.Equal(end.Add(-3*time.Hour)) && (r.Status != "Failed" || !strings.Contains(r.LatestError, "the export pins "+forged)) {
			t.Errorf("a run whose pin differs from its plugin row: %s %q", r.Status, r.LatestError)
		}
	}
	var versions []string
	for _, v := range vs {
		versions = append(versions, v.(map[string]any)["version"].(string))
	}
	if !slices.Equal(versions, []string{"2.0.0"}) {
		t.Errorf("versions %v", versions)
	}
}

// checkObject: the run's object was written under the version's directory (so by that
// module), with one line per record the run reports.
func (e *env) checkObject(t *testing.T, version string, r pinnedRun) {
	t.Helper()
	path := filepath.Join(e.dataDir, "exports", "upg", version, r.IntervalEnd.UTC().Format(time.RFC3339)+".jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the run's object: %v", err)
	}
	defer f.Close()
	n := int64(0)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), `{"event":`) {
			t.Fatalf("%s: line %q", path, sc.Text())
		}
		n++
	}
	if n != r.RecordsCompleted || n == 0 {
		t.Errorf("%s holds %d lines, the run reports %d records", path, n, r.RecordsCompleted)
	}
}
