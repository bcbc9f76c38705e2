package chdbfront

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// nativeBlock encodes one Native block at revision 0, as an embedded engine writes it.
func nativeBlock(t testing.TB, cols []string, types []string, rows ...[]any) []byte {
	t.Helper()
	b := proto.Block{ServerContext: &column.ServerContext{Timezone: time.UTC}}
	for i, c := range cols {
		if err := b.AddColumn(c, column.Type(types[i])); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			t.Fatal(err)
		}
	}
	var buf chproto.Buffer
	if err := b.Encode(&buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf.Buf
}

// fakeEngine answers statements with canned results and records what it ran.
type fakeEngine struct {
	t      testing.TB
	mu     sync.Mutex
	ran    []string
	answer func(sql, format string) (chunks [][]byte, err error, midErr error)
	// block, if set, is waited on by Next after the first chunk
	block chan struct{}
}

func (f *fakeEngine) record(sql string) {
	f.mu.Lock()
	f.ran = append(f.ran, sql)
	f.mu.Unlock()
}

func (f *fakeEngine) statements() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ran...)
}

func (f *fakeEngine) run(sql, format string) ([][]byte, error, error) {
	f.record(sql)
	switch {
	case strings.HasPrefix(sql, "SELECT version(), displayName()"):
		return [][]byte{[]byte("26.7.2.1\tfake\tUTC\tdefault\n")}, nil, nil
	case strings.HasPrefix(sql, "SELECT displayName(), version(), revision(), timezone()"):
		return [][]byte{nativeBlock(f.t, []string{"displayName()", "version()", "revision()", "timezone()"},
			[]string{"String", "String", "UInt32", "String"}, []any{"fake", "26.7.2.1", uint32(54513), "UTC"})}, nil, nil
	case strings.HasPrefix(sql, "SET ") || strings.HasPrefix(sql, "USE "):
		return nil, nil, nil
	}
	if f.answer != nil {
		return f.answer(sql, format)
	}
	return nil, errors.New("Code: 62. DB::Exception: fake engine does not know this query. (SYNTAX_ERROR)"), nil
}

func (f *fakeEngine) Exec(sql, format string) ([]byte, error) {
	chunks, err, midErr := f.run(sql, format)
	if err != nil {
		return nil, err
	}
	if midErr != nil {
		return nil, midErr
	}
	return bytes.Join(chunks, nil), nil
}

func (f *fakeEngine) Stream(sql, format string) (Stream, error) {
	chunks, err, midErr := f.run(sql, format)
	if err != nil {
		return nil, err
	}
	return &fakeStream{chunks: chunks, midErr: midErr, block: f.block}, nil
}

type fakeStream struct {
	chunks [][]byte
	midErr error
	n      int
	block  chan struct{}
	closed bool
}

func (s *fakeStream) Next() ([]byte, error) {
	if s.n > 0 && s.block != nil {
		<-s.block
	}
	if s.n < len(s.chunks) {
		s.n++
		return s.chunks[s.n-1], nil
	}
	if s.midErr != nil {
		return nil, s.midErr
	}
	return nil, nil
}

func (s *fakeStream) Close() { s.closed = true }

func startFront(t *testing.T, f *fakeEngine, opts Options) *httptest.Server {
	t.Helper()
	f.t = t
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	srv, err := New(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs
}

func openHTTP(t *testing.T, hs *httptest.Server, opts ...func(*clickhouse.Options)) clickhouse.Conn {
	t.Helper()
	o := &clickhouse.Options{Protocol: clickhouse.HTTP, Addr: []string{strings.TrimPrefix(hs.URL, "http://")}}
	for _, f := range opts {
		f(o)
	}
	conn, err := clickhouse.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestClickHouseGoQueriesThroughFront(t *testing.T) {
	f := &fakeEngine{answer: func(sql, format string) ([][]byte, error, error) {
		if sql != "SELECT n, s FROM t" || format != "Native" {
			return nil, fmt.Errorf("Code: 62. DB::Exception: unexpected %q %q. (SYNTAX_ERROR)", sql, format), nil
		}
		types := []string{"UInt64", "Nullable(DateTime64(6, 'UTC'))"}
		ts := time.Date(2024, 3, 10, 12, 0, 0, 123456000, time.UTC)
		// two chunks; the second holds two blocks
		c2 := append(nativeBlock(t, []string{"n", "s"}, types, []any{uint64(2), nil}),
			nativeBlock(t, []string{"n", "s"}, types, []any{uint64(3), &ts})...)
		return [][]byte{nativeBlock(t, []string{"n", "s"}, types, []any{uint64(1), &ts}), c2}, nil, nil
	}}
	hs := startFront(t, f, Options{})
	conn := openHTTP(t, hs)
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Revision != 54513 || v.Version.Major != 26 || v.DisplayName != "fake" {
		t.Errorf("server version %+v", v)
	}
	rows, err := conn.Query(context.Background(), "SELECT n, s FROM t")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var n uint64
		var s *time.Time
		if err := rows.Scan(&n, &s); err != nil {
			t.Fatal(err)
		}
		if s == nil {
			got = append(got, fmt.Sprint(n, " null"))
		} else {
			got = append(got, fmt.Sprint(n, " ", s.UTC().Format(time.RFC3339Nano)))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if want := "1 2024-03-10T12:00:00.123456Z|2 null|3 2024-03-10T12:00:00.123456Z"; strings.Join(got, "|") != want {
		t.Errorf("rows %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestSettingsParametersAndDatabaseDoNotLeak(t *testing.T) {
	f := &fakeEngine{answer: func(sql, format string) ([][]byte, error, error) {
		return [][]byte{nativeBlock(t, []string{"x"}, []string{"UInt8"}, []any{uint8(1)})}, nil, nil
	}}
	hs := startFront(t, f, Options{})
	conn := openHTTP(t, hs, func(o *clickhouse.Options) { o.Auth.Database = "db1" })
	ctx := context.Background()
	q := func(ctx context.Context, sql string) {
		t.Helper()
		var x uint8
		if err := conn.QueryRow(ctx, sql).Scan(&x); err != nil {
			t.Fatal(err)
		}
	}
	q(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": 100}),
		clickhouse.WithParameters(clickhouse.Parameters{"x": `it's \ here`})), "SELECT 1")
	q(ctx, "SELECT 2")
	// the statements run before each query (since the previous one; the first query's
	// settings also reach the connection's opening query)
	before := map[string][]string{}
	var pending []string
	for _, s := range f.statements() {
		if s == "SELECT 1" || s == "SELECT 2" {
			before[s] = pending
			pending = nil
		} else {
			pending = append(pending, s)
		}
	}
	has := func(sql, stmt string) bool {
		for _, s := range before[sql] {
			if s == stmt {
				return true
			}
		}
		return false
	}
	for _, st := range []string{"SET `max_block_size` = '100'", "SET `param_x` = 'it\\'s \\\\ here'"} {
		if !has("SELECT 1", st) {
			t.Errorf("before SELECT 1: %q missing from %q", st, before["SELECT 1"])
		}
	}
	if !has("SELECT 2", "SET `max_block_size` = DEFAULT") {
		t.Errorf("before SELECT 2: max_block_size not reset: %q", before["SELECT 2"])
	}
	uses := 0
	for _, s := range f.statements() {
		if s == "USE `db1`" {
			uses++
		}
	}
	if uses != 1 {
		t.Errorf("USE `db1` ran %d times, want once", uses)
	}
}

func TestErrorsBeforeAndDuringTheBody(t *testing.T) {
	f := &fakeEngine{answer: func(sql, format string) ([][]byte, error, error) {
		switch sql {
		case "SELECT * FROM nosuch":
			return nil, errors.New("Code: 60. DB::Exception: Unknown table expression identifier 'nosuch'. (UNKNOWN_TABLE)"), nil
		case "SELECT boom":
			return [][]byte{nativeBlock(t, []string{"x"}, []string{"UInt8"}, []any{uint8(1)})}, nil,
				errors.New("Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)")
		}
		return nil, errors.New("plain failure"), nil
	}}
	hs := startFront(t, f, Options{})
	conn := openHTTP(t, hs)
	ctx := context.Background()

	_, err := conn.Query(ctx, "SELECT * FROM nosuch")
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 60 || !strings.Contains(ex.Message, "nosuch") {
		t.Errorf("unknown table: %v", err)
	}
	var herr *clickhouse.HTTPError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusNotFound {
		t.Errorf("unknown table: HTTP status %v", err)
	}

	rows, err := conn.Query(ctx, "SELECT boom")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if !errors.As(err, &ex) || ex.Code != 395 {
		t.Errorf("mid-stream failure: %v", err)
	}

	_, err = conn.Query(ctx, "SELECT other")
	if !errors.As(err, &ex) || ex.Code != 1001 || !strings.Contains(ex.Message, "plain failure") {
		t.Errorf("non-ClickHouse error: %v", err)
	}
}

func TestBatchInsertThroughFile(t *testing.T) {
	var inserted []string
	f := &fakeEngine{}
	f.answer = func(sql, format string) ([][]byte, error, error) {
		if strings.HasPrefix(sql, "DESCRIBE TABLE t") {
			s := []string{"String", "String", "String", "String", "String", "String", "String"}
			n := []string{"name", "type", "default_type", "default_expression", "comment", "codec_expression", "ttl_expression"}
			return [][]byte{nativeBlock(t, n, s, []any{"a", "UInt32", "", "", "", "", ""}, []any{"b", "LowCardinality(String)", "", "", "", "", ""},
				[]any{"m", "String", "MATERIALIZED", "b", "", "", ""})}, nil, nil
		}
		m := regexp.MustCompile(`^INSERT INTO t \(a, b\) FROM INFILE '([^']+)' FORMAT Native$`).FindStringSubmatch(sql)
		if m == nil {
			return nil, fmt.Errorf("Code: 62. DB::Exception: unexpected %q. (SYNTAX_ERROR)", sql), nil
		}
		data, err := os.ReadFile(m[1])
		if err != nil {
			return nil, err, nil
		}
		b := proto.Block{ServerContext: &column.ServerContext{Timezone: time.UTC}}
		if err := b.Decode(chproto.NewReader(bytes.NewReader(data)), 0); err != nil {
			return nil, err, nil
		}
		for i := 0; i < b.Rows(); i++ {
			inserted = append(inserted, fmt.Sprint(b.Columns[0].Row(i, false), "=", b.Columns[1].Row(i, false)))
		}
		return nil, nil, nil
	}
	hs := startFront(t, f, Options{})
	for _, comp := range []clickhouse.CompressionMethod{clickhouse.CompressionNone, clickhouse.CompressionGZIP} {
		inserted = nil
		conn := openHTTP(t, hs, func(o *clickhouse.Options) { o.Compression = &clickhouse.Compression{Method: comp} })
		b, err := conn.PrepareBatch(context.Background(), "INSERT INTO t (a, b)")
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range []string{"x", "ü🙂", "x"} {
			if err := b.Append(uint32(i), s); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatalf("%v: send: %v", comp, err)
		}
		if got := strings.Join(inserted, ","); got != "0=x,1=ü🙂,2=x" {
			t.Errorf("%v: inserted %s", comp, got)
		}
	}
	// the temporary files are gone
	for _, s := range f.statements() {
		if m := regexp.MustCompile(`FROM INFILE '([^']+)'`).FindStringSubmatch(s); m != nil {
			if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
				t.Errorf("%s left behind", m[1])
			}
		}
	}
}

func TestRawHTTP(t *testing.T) {
	f := &fakeEngine{answer: func(sql, format string) ([][]byte, error, error) {
		return [][]byte{[]byte(fmt.Sprintf("%s|%s\n", sql, format))}, nil, nil
	}}
	hs := startFront(t, f, Options{})
	do := func(method, query string, body io.Reader, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+query, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	if _, body := do("GET", "/ping", nil); body != "Ok.\n" {
		t.Errorf("/ping: %q", body)
	}
	if _, body := do("GET", "/", nil); body != "Ok.\n" {
		t.Errorf("GET /: %q", body)
	}
	res, body := do("POST", "/", strings.NewReader("  "))
	if res.StatusCode != 400 || res.Header.Get("X-ClickHouse-Exception-Code") != "62" || !strings.HasPrefix(body, "Code: 62. DB::Exception: Empty query") || !strings.Contains(body, "(version 26.7.2.1)") {
		t.Errorf("empty query: %d %v %q", res.StatusCode, res.Header, body)
	}
	if res, _ := do("POST", "/?compress=1", strings.NewReader("SELECT 1")); res.StatusCode != 501 || res.Header.Get("X-ClickHouse-Exception-Code") != "48" {
		t.Errorf("compress=1: %d", res.StatusCode)
	}
	// query parameter, then a newline, then the body; TabSeparated by default
	if _, body := do("POST", "/?query="+url.QueryEscape("SELECT 1,"), strings.NewReader("2")); body != "SELECT 1,\n2|TabSeparated\n" {
		t.Errorf("query param + body: %q", body)
	}
	// the query's own FORMAT wins over default_format, and is announced
	res, body = do("POST", "/?default_format=Native", strings.NewReader("SELECT 1 FORMAT JSONEachRow"))
	if body != "SELECT 1 FORMAT JSONEachRow|JSONEachRow\n" || res.Header.Get("X-ClickHouse-Format") != "JSONEachRow" {
		t.Errorf("FORMAT clause: %q %v", body, res.Header)
	}
	// gzip body
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	io.WriteString(zw, "SELECT 'zipped'")
	zw.Close()
	if _, body := do("POST", "/", &zb, "Content-Encoding", "gzip"); body != "SELECT 'zipped'|TabSeparated\n" {
		t.Errorf("gzip body: %q", body)
	}
	if res, _ := do("GET", "/nope", nil); res.StatusCode != 404 {
		t.Errorf("/nope: %d", res.StatusCode)
	}
}

func TestBusySessionTimesOut(t *testing.T) {
	release := make(chan struct{})
	f := &fakeEngine{block: release, answer: func(sql, format string) ([][]byte, error, error) {
		return [][]byte{[]byte("a\n"), []byte("b\n")}, nil, nil
	}}
	hs := startFront(t, f, Options{LockTimeout: 100 * time.Millisecond})
	first, err := http.Post(hs.URL, "text/plain", strings.NewReader("SELECT slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	// the first response holds the session (its stream waits on release)
	res, err := http.Post(hs.URL, "text/plain", strings.NewReader("SELECT other"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("X-ClickHouse-Exception-Code") != "202" {
		t.Errorf("busy: %d %q", res.StatusCode, body)
	}
	close(release)
	b, _ := io.ReadAll(first.Body)
	if string(b) != "a\nb\n" {
		t.Errorf("first body %q", b)
	}
	res, err = http.Post(hs.URL, "text/plain", strings.NewReader("SELECT after"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("after release: %d", res.StatusCode)
	}
}

func TestParsing(t *testing.T) {
	m := insertFormatRe.FindStringSubmatch("INSERT INTO db.t (a, `b c`) SETTINGS async_insert=1 FORMAT Native")
	if m == nil || m[1] != "INSERT INTO db.t (a, `b c`)" || m[2] != " SETTINGS async_insert=1" || m[3] != "Native" {
		t.Errorf("split %q", m)
	}
	for sql, kw := range map[string]string{"  -- c\n/* x */ select 1": "SELECT", "(SELECT 1)": "(", "with x as (select 1) select": "WITH", "DESCRIBE t": "DESCRIBE"} {
		if got := firstKeyword(sql); got != kw {
			t.Errorf("firstKeyword(%q) = %q, want %q", sql, got, kw)
		}
	}
}
