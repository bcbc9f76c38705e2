// Package chdbfront serves ClickHouse's HTTP interface over an embedded engine with no
// listener of its own (chDB, ClickHouse as a library), well enough for an unmodified
// clickhouse-go/v2 client using Protocol: clickhouse.HTTP:
//
//   - GET/HEAD / and /ping answer "Ok.\n".
//   - The query comes in the POST body, in the `query` parameter, or both (ClickHouse's
//     rule: the parameter, a newline, then the body). An INSERT whose query ends in
//     `FORMAT <name>` takes its data from the body (written to a temporary file and inserted
//     with `FROM INFILE`).
//   - Every parameter that is not part of the protocol (query, database, default_format,
//     client_protocol_version, query_id, session_id, ...) is a setting, applied with SET
//     before the query and reset to DEFAULT before a later query that does not send it, so
//     settings never leak between requests. `param_<name>` parameters are the server-side
//     query parameters `{name:Type}`; `database` (or X-ClickHouse-Database) selects the
//     current database.
//   - The output format is the query's own FORMAT clause, else `default_format` (or
//     X-ClickHouse-Format), else TabSeparated. The engine writes Native at protocol revision
//     0 (no block info, no custom-serialization flags); when the client asks for
//     `client_protocol_version` > 0, as clickhouse-go does, each block is re-encoded at that
//     revision, as a server does.
//   - A failure before the first byte is an HTTP error (500, or the status ClickHouse's
//     HTTP handler uses for a few codes: 400 syntax/parse, 404 unknown table/database/
//     function/setting, 501 not implemented) with X-ClickHouse-Exception-Code and the
//     engine's text ("Code: 60. DB::Exception: ... (UNKNOWN_TABLE) (version 26.7.2.1)").
//     A failure after it is written into the body in ClickHouse's framed
//     `__exception__` block (tag announced in X-ClickHouse-Exception-Tag).
//
// The engine holds one session: requests are served one at a time (a waiting request gives
// up after Options.LockTimeout with TOO_MANY_SIMULTANEOUS_QUERIES), and a streamed result
// holds the session until it is fully written or the client goes away. Results are
// streamed chunk by chunk, so the front's memory does not grow with the result.
//
// Not supported (answered with NOT_IMPLEMENTED): external tables (multipart bodies) and
// ClickHouse's own block compression (compress=1 / decompress=1, clickhouse-go's LZ4/ZSTD
// over HTTP). Request bodies may be gzip, deflate or br (Content-Encoding); responses are
// never compressed, which clients accept.
package chdbfront

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"
)

// Engine runs one statement at a time on an embedded session. The Server never calls it
// concurrently.
type Engine interface {
	// Exec runs a statement and returns its whole output in format.
	Exec(sql, format string) ([]byte, error)
	// Stream runs a query and returns its output in chunks.
	Stream(sql, format string) (Stream, error)
}

// Stream is a query result read chunk by chunk.
type Stream interface {
	// Next returns the next chunk, valid until the next call; (nil, nil) at the end.
	Next() ([]byte, error)
	// Close stops the query if it is still running and frees the result.
	Close()
}

// Options tune a Server.
type Options struct {
	// LockTimeout bounds how long a request waits for the session (default 2 minutes).
	LockTimeout time.Duration
	// TempDir holds INSERT bodies while they are inserted (default os.TempDir()).
	TempDir string
	// Logf, if set, receives one line per failed request.
	Logf func(format string, args ...any)
}

// Server is an http.Handler speaking ClickHouse's HTTP interface over an Engine.
type Server struct {
	eng  Engine
	opts Options
	sem  chan struct{} // one slot: the session

	// Engine facts, read once.
	version, displayName, timezone string

	// Session state, guarded by sem.
	db       string
	settings map[string]string
}

// New reads the engine's version and returns a Server.
func New(eng Engine, opts Options) (*Server, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Minute
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	s := &Server{eng: eng, opts: opts, sem: make(chan struct{}, 1), settings: map[string]string{}}
	out, err := eng.Exec("SELECT version(), displayName(), timezone(), currentDatabase()", "TabSeparated")
	if err != nil {
		return nil, fmt.Errorf("chdbfront: engine: %w", err)
	}
	f := strings.Split(strings.TrimRight(string(out), "\n"), "\t")
	if len(f) != 4 {
		return nil, fmt.Errorf("chdbfront: engine: unexpected answer %q", out)
	}
	s.version, s.displayName, s.timezone, s.db = f[0], f[1], f[2], f[3]
	return s, nil
}

// Version is the engine's version (e.g. 26.7.2.1).
func (s *Server) Version() string { return s.version }

// Protocol parameters; every other parameter is a setting.
var protocolParams = map[string]bool{
	"query": true, "database": true, "default_format": true, "client_protocol_version": true,
	"query_id": true, "quota_key": true, "session_id": true, "session_timeout": true,
	"session_check": true, "compress": true, "decompress": true, "user": true, "password": true,
	"buffer_size": true, "wait_end_of_query": true, "stacktrace": true, "role": true,
	"with_stacktrace": true,
}

// ClickHouse error codes used by the front itself.
const (
	codeSyntaxError    = 62
	codeNotImplemented = 48
	codeTooMany        = 202
	codeNetwork        = 210
)

// chError is an engine or front error in ClickHouse's text form.
type chError struct {
	code int
	text string // "Code: N. DB::Exception: ... (NAME)"
}

func (e *chError) Error() string { return e.text }

var codeRe = regexp.MustCompile(`^Code:\s*(\d+)\.`)

// asCHError gives err ClickHouse's shape; engine errors already have it.
func asCHError(err error) *chError {
	var ce *chError
	if errors.As(err, &ce) {
		return ce
	}
	text := strings.TrimSpace(err.Error())
	if m := codeRe.FindStringSubmatch(text); m != nil {
		code, _ := strconv.Atoi(m[1])
		return &chError{code: code, text: text}
	}
	return &chError{code: 1001, text: "Code: 1001. DB::Exception: " + text + ". (STD_EXCEPTION)"}
}

func frontError(code int, name, msg string) *chError {
	return &chError{code: code, text: fmt.Sprintf("Code: %d. DB::Exception: %s. (%s)", code, msg, name)}
}

// httpStatus is the status ClickHouse's HTTP handler answers for an exception code.
func httpStatus(code int) int {
	switch code {
	case 6, 25, 26, 27, 32, 38, 41, 53, 62, 72, 117, 167, 168: // parse errors, SYNTAX_ERROR, TYPE_MISMATCH, INCORRECT_DATA, AST limits
		return http.StatusBadRequest
	case 46, 47, 50, 56, 60, 63, 73, 81, 115: // UNKNOWN_FUNCTION/IDENTIFIER/TYPE/STORAGE/TABLE/AGGREGATE_FUNCTION/FORMAT/DATABASE/SETTING
		return http.StatusNotFound
	case codeNotImplemented:
		return http.StatusNotImplemented
	case codeTooMany:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// writeError answers a request that failed before its body was started.
func (s *Server) writeError(w http.ResponseWriter, queryID string, err error) {
	ce := asCHError(err)
	s.logf("chdbfront: query %s: %s", queryID, ce.text)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("X-ClickHouse-Exception-Code", strconv.Itoa(ce.code))
	h.Set("X-ClickHouse-Server-Display-Name", s.displayName)
	if queryID != "" {
		h.Set("X-ClickHouse-Query-Id", queryID)
	}
	w.WriteHeader(httpStatus(ce.code))
	io.WriteString(w, ce.text+" (version "+s.version+")\n")
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	switch {
	case r.URL.Path == "/ping" || r.URL.Path == "/replicas_status":
		io.WriteString(w, "Ok.\n")
		return
	case r.URL.Path != "/":
		http.Error(w, "There is no handle "+r.URL.Path, http.StatusNotFound)
		return
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && !params.Has("query"):
		io.WriteString(w, "Ok.\n")
		return
	case r.Method != http.MethodGet && r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	queryID := params.Get("query_id")
	if queryID == "" {
		queryID = newID()
	}
	req, err := s.parse(r, params)
	if err != nil {
		s.writeError(w, queryID, err)
		return
	}
	defer req.cleanup()
	if err := s.acquire(r.Context()); err != nil {
		s.writeError(w, queryID, err)
		return
	}
	defer func() { <-s.sem }()
	s.run(w, r.Context(), queryID, req)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) acquire(ctx context.Context) error {
	t := time.NewTimer(s.opts.LockTimeout)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return frontError(codeNetwork, "NETWORK_ERROR", "client went away while waiting for the session")
	case <-t.C:
		return frontError(codeTooMany, "TOO_MANY_SIMULTANEOUS_QUERIES",
			fmt.Sprintf("chdbfront runs one query at a time and the session stayed busy for %s", s.opts.LockTimeout))
	}
}

// request is a parsed HTTP query.
type request struct {
	sql       string
	format    string // output format
	stream    bool   // a query with a result (streamed) rather than a statement
	db        string
	settings  map[string]string
	params    map[string]string // server-side query parameters
	clientRev uint64
	tmp       string // INSERT body file, removed by cleanup
}

func (q *request) cleanup() {
	if q.tmp != "" {
		os.Remove(q.tmp)
	}
}

var (
	// trailing FORMAT clause of a query
	formatClauseRe = regexp.MustCompile(`(?is)\sFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$`)
	// an INSERT taking data in a format: head, optional SETTINGS clause, format name
	insertFormatRe = regexp.MustCompile(`(?is)^(.*?)(\s+SETTINGS\s+.*?)?\s+FORMAT\s+([A-Za-z0-9_]+)\s*$`)
	leadingNoise   = regexp.MustCompile(`^(?s:\s+|--[^\n]*\n?|/\*.*?\*/)+`)
)

// firstKeyword returns the statement's first word in upper case.
func firstKeyword(sql string) string {
	sql = leadingNoise.ReplaceAllString(sql, "")
	if strings.HasPrefix(sql, "(") {
		return "("
	}
	end := strings.IndexFunc(sql, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
	})
	if end < 0 {
		end = len(sql)
	}
	return strings.ToUpper(sql[:end])
}

// Queries whose result is streamed; everything else (DESCRIBE, SHOW, DDL, INSERT, ...)
// runs with Exec and is answered from memory. chDB refuses to stream some statements
// ("Streaming query is not supported"); those are retried with Exec.
var queryKeywords = map[string]bool{"SELECT": true, "WITH": true, "(": true}

func (s *Server) parse(r *http.Request, params map[string][]string) (*request, error) {
	get := func(k string) string {
		if v := params[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if get("compress") == "1" || get("decompress") == "1" {
		return nil, frontError(codeNotImplemented, "NOT_IMPLEMENTED", "chdbfront does not support ClickHouse block compression (compress/decompress); use no compression or gzip")
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		return nil, frontError(codeNotImplemented, "NOT_IMPLEMENTED", "chdbfront does not support external tables (multipart bodies)")
	}
	q := &request{settings: map[string]string{}, params: map[string]string{}, db: get("database"), format: get("default_format")}
	if q.db == "" {
		q.db = r.Header.Get("X-ClickHouse-Database")
	}
	if q.format == "" {
		q.format = r.Header.Get("X-ClickHouse-Format")
	}
	if q.format == "" {
		q.format = "TabSeparated"
	}
	if v := get("client_protocol_version"); v != "" {
		rev, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, frontError(72, "CANNOT_PARSE_NUMBER", "client_protocol_version "+strconv.Quote(v)+" is not a number")
		}
		q.clientRev = rev
	}
	for k, v := range params {
		switch {
		case strings.HasPrefix(k, "param_"):
			q.params[strings.TrimPrefix(k, "param_")] = v[0]
		case !protocolParams[k]:
			q.settings[k] = v[0]
		}
	}
	body, err := decodeBody(r)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	head := get("query")
	if head != "" && firstKeyword(head) == "INSERT" {
		if m := insertFormatRe.FindStringSubmatch(head); m != nil {
			// INSERT ... FORMAT x: the body is the data.
			f, err := os.CreateTemp(s.opts.TempDir, "chdbfront-insert-*")
			if err != nil {
				return nil, err
			}
			q.tmp = f.Name()
			n, err := io.Copy(f, body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				q.cleanup()
				return nil, frontError(codeNetwork, "NETWORK_ERROR", "reading the INSERT body: "+err.Error())
			}
			if n == 0 {
				q.sql = head // nothing to insert; let the engine answer
			} else {
				q.sql = m[1] + " FROM INFILE " + quoteString(q.tmp) + m[2] + " FORMAT " + m[3]
			}
			return q, nil
		}
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, frontError(codeNetwork, "NETWORK_ERROR", "reading the request body: "+err.Error())
	}
	switch {
	case head != "" && len(data) > 0:
		q.sql = head + "\n" + string(data)
	case head != "":
		q.sql = head
	default:
		q.sql = string(data)
	}
	if strings.TrimSpace(q.sql) == "" {
		return nil, frontError(codeSyntaxError, "SYNTAX_ERROR", "Empty query")
	}
	kw := firstKeyword(q.sql)
	q.stream = queryKeywords[kw]
	if kw != "INSERT" {
		if m := formatClauseRe.FindStringSubmatch(q.sql); m != nil {
			q.format = m[1]
		}
	}
	return q, nil
}

func decodeBody(r *http.Request) (io.ReadCloser, error) {
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		return r.Body, nil
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, frontError(codeNetwork, "NETWORK_ERROR", "gzip body: "+err.Error())
		}
		return zr, nil
	case "deflate":
		return flate.NewReader(r.Body), nil
	case "br":
		return io.NopCloser(brotli.NewReader(r.Body)), nil
	default:
		return nil, frontError(codeNotImplemented, "NOT_IMPLEMENTED", "unsupported Content-Encoding "+strconv.Quote(enc))
	}
}

// quoteString renders s as a ClickHouse string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// prepare brings the session to the request's database, settings and parameters.
func (s *Server) prepare(q *request) error {
	if q.db != "" && q.db != s.db {
		if _, err := s.eng.Exec("USE "+quoteIdent(q.db), "TabSeparated"); err != nil {
			return err
		}
		s.db = q.db
	}
	for k := range s.settings {
		if _, ok := q.settings[k]; !ok {
			if _, err := s.eng.Exec("SET "+quoteIdent(k)+" = DEFAULT", "TabSeparated"); err != nil {
				return err
			}
			delete(s.settings, k)
		}
	}
	for k, v := range q.settings {
		if cur, ok := s.settings[k]; ok && cur == v {
			continue
		}
		if _, err := s.eng.Exec("SET "+quoteIdent(k)+" = "+quoteString(v), "TabSeparated"); err != nil {
			return err
		}
		s.settings[k] = v
	}
	for k, v := range q.params {
		if _, err := s.eng.Exec("SET "+quoteIdent("param_"+k)+" = "+quoteString(v), "TabSeparated"); err != nil {
			return err
		}
	}
	return nil
}

func quoteIdent(s string) string {
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(s) + "`"
}

// sliceStream is a materialized result as a one-chunk Stream.
type sliceStream struct{ b []byte }

func (s *sliceStream) Next() ([]byte, error) {
	b := s.b
	s.b = nil
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}
func (s *sliceStream) Close() {}

func contentType(format string) string {
	switch strings.ToLower(format) {
	case "tabseparated", "tsv", "tabseparatedwithnames", "tsvwithnames", "tabseparatedraw", "tsvraw":
		return "text/tab-separated-values; charset=UTF-8"
	case "csv", "csvwithnames":
		return "text/csv; charset=UTF-8; header=absent"
	case "json", "jsoneachrow", "jsoncompact", "jsoncompacteachrow", "jsonstrings":
		return "application/json; charset=UTF-8"
	case "native", "rowbinary", "rowbinarywithnamesandtypes", "parquet", "arrow", "arrowstream", "orc", "avro":
		return "application/octet-stream"
	}
	return "text/plain; charset=UTF-8"
}

// run executes q and writes the response; the session is held.
func (s *Server) run(w http.ResponseWriter, ctx context.Context, queryID string, q *request) {
	if err := s.prepare(q); err != nil {
		s.writeError(w, queryID, err)
		return
	}
	var st Stream
	if q.stream {
		var err error
		if st, err = s.eng.Stream(q.sql, q.format); err != nil {
			if !strings.Contains(err.Error(), "Streaming query is not supported") {
				s.writeError(w, queryID, err)
				return
			}
			q.stream = false
		}
	}
	if !q.stream {
		out, err := s.eng.Exec(q.sql, q.format)
		if err != nil {
			s.writeError(w, queryID, err)
			return
		}
		st = &sliceStream{b: out}
	}
	defer st.Close()

	native := strings.EqualFold(q.format, "Native") && q.clientRev > 0
	src := &chunkReader{st: st}
	// Read the first chunk before answering, so an early failure is an HTTP error.
	if err := src.fill(); err != nil {
		s.writeError(w, queryID, err)
		return
	}
	h := w.Header()
	h.Set("X-ClickHouse-Query-Id", queryID)
	h.Set("X-ClickHouse-Format", q.format)
	h.Set("X-ClickHouse-Timezone", s.timezone)
	h.Set("X-ClickHouse-Server-Display-Name", s.displayName)
	h.Set("Content-Type", contentType(q.format))
	if src.eof {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	tag := newID()[:16]
	h.Set("X-ClickHouse-Exception-Tag", tag)
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	out := &flushWriter{w: w, f: fl, ctx: ctx}
	var err error
	if native {
		err = transcodeNative(src, out, q.clientRev)
		if src.err != nil { // the engine failed, not the decoder
			err = src.err
		}
	} else {
		err = src.copyTo(out)
	}
	if err != nil && out.err == nil {
		// Mid-stream failure: ClickHouse's framed exception block.
		ce := asCHError(err)
		s.logf("chdbfront: query %s failed mid-stream: %s", queryID, ce.text)
		msg := ce.text + " (version " + s.version + ")"
		fmt.Fprintf(w, "\r\n__exception__\r\n%s\r\n%s\n%d %s\r\n__exception__\r\n", tag, msg, len(msg), tag)
	}
}

// chunkReader reads a Stream as an io.Reader, copying each chunk (its bytes are only valid
// until the next call to Next).
type chunkReader struct {
	st  Stream
	buf []byte
	off int
	eof bool
	err error // the engine's error
}

func (c *chunkReader) fill() error {
	for c.off >= len(c.buf) && !c.eof {
		b, err := c.st.Next()
		if err != nil {
			c.err = err
			return err
		}
		if b == nil {
			c.eof = true
			return nil
		}
		c.buf = append(c.buf[:0], b...)
		c.off = 0
	}
	return nil
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if err := c.fill(); err != nil {
		return 0, err
	}
	if c.off >= len(c.buf) {
		return 0, io.EOF
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}

// copyTo writes the chunks through unchanged.
func (c *chunkReader) copyTo(w io.Writer) error {
	for {
		if err := c.fill(); err != nil {
			return err
		}
		if c.off >= len(c.buf) {
			return nil
		}
		if _, err := w.Write(c.buf[c.off:]); err != nil {
			return err
		}
		c.off = len(c.buf)
	}
}

// flushWriter flushes after every write and stops when the client has gone.
type flushWriter struct {
	w   io.Writer
	f   http.Flusher
	ctx context.Context
	err error
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if err := f.ctx.Err(); err != nil {
		f.err = err
		return 0, err
	}
	n, err := f.w.Write(p)
	if err == nil && f.f != nil {
		f.f.Flush()
	}
	if err != nil {
		f.err = err
	}
	return n, err
}
