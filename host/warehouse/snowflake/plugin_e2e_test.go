package snowflake_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/warehouse/snowflake"
	"github.com/sluicehq/sluice/host/warehouse/snowflake/sffake"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func events(n, offset int, big bool) []byte {
	w := abi.NewBatchWriter(abi.EventColumns, nil)
	for j := range n {
		i := offset + j
		e := abi.Event{Event: "pageview", DistinctID: fmt.Sprintf("d%d", i), TeamID: 7,
			Properties:    fmt.Sprintf(`{"$ip":"10.0.0.%d","$set":{"email":"a%d@x"},"$set_once":{"first":true},"pad":"%s"}`, i%250, i, pad(i, big)),
			ElementsChain: `a:nth-child="1"`, Timestamp: t0.Add(time.Duration(i) * time.Millisecond), InsertedAt: t0}
		e.UUID[14], e.UUID[15] = byte(i>>8), byte(i)
		w.AppendEvent(&e)
		w.EndRow()
	}
	return w.Bytes()
}

// pad is ~1.3 KB of hard-to-compress text (big), so that a few thousand events make files
// of more than 1 MB compressed, or 64 bytes.
func pad(i int, big bool) string {
	var b strings.Builder
	n := 1
	if big {
		n = 20
	}
	for k := range n {
		sum := sha256.Sum256([]byte(fmt.Sprint(i, k)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()
}

func buildPlugin(t *testing.T) []byte {
	t.Helper()
	wasmPath := filepath.Join(t.TempDir(), "snowflake.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w -buildid=", "-o", wasmPath, "../../../plugins/snowflake")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// TestPluginEndToEnd builds plugins/snowflake to wasm, runs it in host/runtime with the
// capability bound against sffake (JSON Lines + gzip, then Parquet), checks the statements
// and their order, decodes the staged files and compares their rows with the table, and
// checks that a retried attempt of the same run loads nothing twice.
func TestPluginEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the wasm plugin")
	}
	wasm := buildPlugin(t)
	ctx := context.Background()
	// wazero's compilation cache: compiling the plugin dominates this test under -race
	// (~30 s); later runs on the same machine reuse the compiled code.
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: filepath.Join(os.TempDir(), "sluice-test-wazero-cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, wasm, []string{abi.CapSnowflake}, runtime.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"JSONLines", "Parquet"} {
		t.Run(format, func(t *testing.T) {
			key := rsaKey(t)
			pemKey, err := snowflake.EncryptPKCS8(key, "pass", []byte("0123456789abcdef"), make([]byte, 16))
			if err != nil {
				t.Fatal(err)
			}
			f, c := setup(t, func(cfg *snowflake.Config) {
				cfg.AuthType, cfg.Password, cfg.PrivateKeyPEM, cfg.PrivateKeyPassphrase = snowflake.AuthKeyPair, "", pemKey, "pass"
			}, func(o *sffake.Options) { o.PublicKey = &key.PublicKey })
			b := runtime.Bindings{
				Warehouses: map[string]runtime.Caller{abi.CapSnowflake: c},
				Sinks:      map[string]runtime.ObjectStore{abi.SinkSnowflakeStage: c.Sink()},
				Encoders: func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
					return encode.New(w, spec, cols)
				},
			}
			req := abi.OpenRequest{RunID: "run-42", ExportID: "e1", ExportName: "sf", IntervalStart: t0, IntervalEnd: t0.Add(time.Hour),
				Attempt: 1, Columns: abi.EventColumns, Config: map[string]any{"account": "testaccount", "user": "sluice",
					"authentication_type": "keypair", "database": "analytics", "schema": "public", "table_name": "events",
					"warehouse": "WH", "role": "LOADER", "file_format": format, "compression": "gzip", "max_file_size_mb": 1}}
			// JSON Lines: 3000 events of ~1.5 KB, split into files of ~1 MB compressed.
			// Parquet buffers a row group (64 MiB of input) before its bytes reach the
			// upload, so its files split at row groups: smaller events suffice.
			big := format == "JSONLines"
			run := func(req abi.OpenRequest) abi.Result {
				t.Helper()
				s, err := p.Open(ctx, req, b)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close(ctx)
				for i := range 3 {
					if err := s.WriteBatch(ctx, events(1000, i*1000, big), 1000); err != nil {
						t.Fatal(err)
					}
				}
				res, err := s.Finish(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return res.Result
			}
			res := run(req)
			if res.Records != 3000 || len(res.Outputs) != 1 || res.Outputs[0].Name != "analytics.public.events" {
				t.Fatalf("result %+v", res)
			}
			tb, ok := f.Table(db, schema, "events")
			if !ok || len(tb.Rows) != 3000 || tb.Comment != "PostHog generated events table" {
				t.Fatalf("table %v rows %d", ok, len(tb.Rows))
			}
			byUUID := map[string]map[string]any{}
			for _, r := range tb.Rows {
				byUUID[r["UUID"].(string)] = r
			}
			row := byUUID["00000000-0000-0000-0000-000000000a03"] // event 2563
			if row == nil || row["EVENT"] != "pageview" || row["DISTINCT_ID"] != "d2563" || row["IP"] != "10.0.0.63" ||
				row["TEAM_ID"] != int64(7) || row["SITE_URL"] != "" || fmt.Sprint(row["PEOPLE_SET"]) != "map[email:a2563@x]" ||
				fmt.Sprint(row["PEOPLE_SET_ONCE"]) != "map[first:true]" || row["ELEMENTS"] != `a:nth-child="1"` ||
				!row["TIMESTAMP"].(time.Time).Equal(t0.Add(2563*time.Millisecond)) {
				t.Fatalf("row %v", row)
			}
			// The staged files: decode each, compare with the table's rows.
			loaded := f.Loaded()
			if format == "JSONLines" && len(loaded) < 2 || len(loaded) == 0 {
				t.Fatalf("staged %d files", len(loaded))
			}
			total := 0
			ff := "JSON"
			if format == "Parquet" {
				ff = "PARQUET"
			}
			for i, lf := range loaded {
				want := fmt.Sprintf("sluice/run-42/part-%05d", i)
				if !strings.HasPrefix(lf.Path, want) {
					t.Fatalf("file %d path %s", i, lf.Path)
				}
				recs, err := sffake.DecodeFile(ff, lf.Bytes)
				if err != nil || len(recs) != lf.Rows {
					t.Fatalf("decode %s: %v (%d records, %d rows)", lf.Path, err, len(recs), lf.Rows)
				}
				for _, rec := range recs {
					r := byUUID[fmt.Sprint(rec["uuid"])]
					if r == nil || r["DISTINCT_ID"] != rec["distinct_id"] || r["EVENT"] != rec["event"] {
						t.Fatalf("staged record %v not in the table", rec)
					}
				}
				total += len(recs)
			}
			if total != 3000 {
				t.Fatalf("staged records %d", total)
			}
			if left := f.StagedFiles(db, schema, "events"); len(left) != 0 {
				t.Fatalf("stage not cleaned: %v", left)
			}
			var kinds []string
			for _, s := range f.SQL() {
				kinds = append(kinds, strings.Fields(s)[0])
			}
			seq := strings.Join(kinds, ",")
			if !strings.HasPrefix(seq, "CREATE,PUT,") || !strings.HasSuffix(seq, ",PUT,COPY,REMOVE") || strings.Count(seq, "COPY") != 1 {
				t.Fatalf("statements %s", seq)
			}
			if got := f.Logins(); len(got) == 0 || got[0] != "SNOWFLAKE_JWT" {
				t.Fatalf("logins %v", got)
			}
			// A retried attempt of the same run re-stages the same files: COPY skips them.
			req.Attempt = 2
			res = run(req)
			tb, _ = f.Table(db, schema, "events")
			if len(tb.Rows) != 3000 {
				t.Fatalf("retry loaded again: %d rows", len(tb.Rows))
			}
			if len(f.Loaded()) != len(loaded) {
				t.Fatalf("retry read files again: %d", len(f.Loaded()))
			}
			if left := f.StagedFiles(db, schema, "events"); len(left) != 0 {
				t.Fatalf("stage not cleaned after retry: %v", left)
			}
		})
	}
}
