package bqfake

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	bq "google.golang.org/api/bigquery/v2"
)

// The fake evaluates only:
//
//	INSERT [INTO] path [(col, ...)] SELECT item, ... FROM path [[AS] alias]
//	DROP TABLE [IF EXISTS] path
//
// where path is table, dataset.table or project.dataset.table (backticks allowed, also
// around the whole path), and an item is expr [AS name] with expr one of: a column
// (optionally alias-qualified), a string/number literal, NULL, TRUE, FALSE, or a call of
// TO_HEX, REGEXP_REPLACE, JSON_QUERY, JSON_VALUE, JSON_EXTRACT, JSON_EXTRACT_SCALAR,
// TO_JSON_STRING, PARSE_JSON, CURRENT_TIMESTAMP, COALESCE. Values are coerced to the
// target column's type like BigQuery does (no implicit STRING → JSON). Anything else is an
// invalidQuery error.

type queryResult struct {
	statementType string
	affected      int64
}

type jsonValue string // a JSON-typed value (its JSON text)

type tok struct {
	kind byte // i ident, q quoted ident, s string, n number, p punct
	text string
}

func (t tok) kw(k string) bool { return t.kind == 'i' && strings.EqualFold(t.text, k) }

func lexSQL(sql string) ([]tok, error) {
	var out []tok
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '#':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '`':
			j := strings.IndexByte(sql[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated identifier")
			}
			out = append(out, tok{'q', sql[i+1 : i+1+j]})
			i += j + 2
		case c == '\'' || c == '"' || ((c == 'r' || c == 'R') && i+1 < len(sql) && (sql[i+1] == '\'' || sql[i+1] == '"')):
			raw := c == 'r' || c == 'R'
			if raw {
				i++
			}
			q := sql[i]
			i++
			var b strings.Builder
			for i < len(sql) && sql[i] != q {
				if sql[i] == '\\' && !raw && i+1 < len(sql) {
					i++
					switch sql[i] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					default:
						b.WriteByte(sql[i])
					}
					i++
					continue
				}
				if sql[i] == '\\' && raw && i+1 < len(sql) && sql[i+1] == q {
					b.WriteByte('\\')
					b.WriteByte(q)
					i += 2
					continue
				}
				b.WriteByte(sql[i])
				i++
			}
			if i >= len(sql) {
				return nil, fmt.Errorf("unterminated string")
			}
			i++
			out = append(out, tok{'s', b.String()})
		case c >= '0' && c <= '9':
			j := i
			for j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.') {
				j++
			}
			out = append(out, tok{'n', sql[i:j]})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= 'A' && sql[j] <= 'Z' || sql[j] >= '0' && sql[j] <= '9') {
				j++
			}
			out = append(out, tok{'i', sql[i:j]})
			i = j
		default:
			out = append(out, tok{'p', string(c)})
			i++
		}
	}
	return out, nil
}

type parser struct {
	toks []tok
	i    int
}

func (p *parser) peek() tok {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return tok{}
}
func (p *parser) next() tok { t := p.peek(); p.i++; return t }
func (p *parser) eof() bool { return p.i >= len(p.toks) }
func (p *parser) accept(k string) bool {
	if p.peek().kw(k) || (p.peek().kind == 'p' && p.peek().text == k) {
		p.i++
		return true
	}
	return false
}
func (p *parser) expect(k string) error {
	if !p.accept(k) {
		return fmt.Errorf("expected %s near %q", k, p.peek().text)
	}
	return nil
}

func (p *parser) path() ([]string, error) {
	var segs []string
	for {
		t := p.next()
		if t.kind != 'i' && t.kind != 'q' {
			return nil, fmt.Errorf("expected a table name near %q", t.text)
		}
		segs = append(segs, strings.Split(t.text, ".")...)
		if !p.accept(".") {
			return segs, nil
		}
	}
}

type tableRef struct{ project, dataset, table string }

func resolve(segs []string, defProject, defDataset string) (tableRef, error) {
	switch len(segs) {
	case 1:
		return tableRef{defProject, defDataset, segs[0]}, nil
	case 2:
		return tableRef{defProject, segs[0], segs[1]}, nil
	case 3:
		return tableRef{segs[0], segs[1], segs[2]}, nil
	}
	return tableRef{}, fmt.Errorf("invalid table path %s", strings.Join(segs, "."))
}

// runQuery evaluates a query job. Called with s.mu held.
func (s *Server) runQuery(project string, cfg *bq.JobConfigurationQuery) (queryResult, *Fault) {
	invalid := func(format string, args ...any) (queryResult, *Fault) {
		return queryResult{}, &Fault{Reason: "invalidQuery", Message: fmt.Sprintf(format, args...)}
	}
	toks, err := lexSQL(cfg.Query)
	if err != nil {
		return invalid("Syntax error: %v", err)
	}
	for len(toks) > 0 && toks[len(toks)-1].text == ";" {
		toks = toks[:len(toks)-1]
	}
	p := &parser{toks: toks}
	defP, defD := project, ""
	if cfg.DefaultDataset != nil {
		if cfg.DefaultDataset.ProjectId != "" {
			defP = cfg.DefaultDataset.ProjectId
		}
		defD = cfg.DefaultDataset.DatasetId
	}
	lookup := func(segs []string) (*dataset, tableRef, *Fault) {
		ref, err := resolve(segs, defP, defD)
		if err != nil {
			return nil, ref, &Fault{Reason: "invalidQuery", Message: err.Error()}
		}
		d := s.datasets[ref.project+":"+ref.dataset]
		if d == nil {
			return nil, ref, &Fault{Reason: "notFound", Message: "Not found: Dataset " + ref.project + ":" + ref.dataset}
		}
		return d, ref, nil
	}
	switch {
	case p.accept("DROP"):
		if err := p.expect("TABLE"); err != nil {
			return invalid("Syntax error: %v", err)
		}
		ifExists := false
		if p.accept("IF") {
			if err := p.expect("EXISTS"); err != nil {
				return invalid("Syntax error: %v", err)
			}
			ifExists = true
		}
		segs, err := p.path()
		if err != nil || !p.eof() {
			return invalid("Syntax error: bqfake cannot parse %q", cfg.Query)
		}
		d, ref, f := lookup(segs)
		if f != nil {
			return queryResult{}, f
		}
		if d.tables[ref.table] == nil {
			if ifExists {
				return queryResult{statementType: "DROP_TABLE"}, nil
			}
			return queryResult{}, &Fault{Reason: "notFound", Message: "Not found: Table " + ref.project + ":" + ref.dataset + "." + ref.table}
		}
		delete(d.tables, ref.table)
		return queryResult{statementType: "DROP_TABLE"}, nil
	case p.accept("INSERT"):
		p.accept("INTO")
		segs, err := p.path()
		if err != nil {
			return invalid("Syntax error: %v", err)
		}
		d, ref, f := lookup(segs)
		if f != nil {
			return queryResult{}, f
		}
		target := d.tables[ref.table]
		if target == nil {
			return queryResult{}, &Fault{Reason: "notFound", Message: "Not found: Table " + ref.project + ":" + ref.dataset + "." + ref.table}
		}
		var cols []string
		if p.accept("(") {
			for {
				t := p.next()
				if t.kind != 'i' && t.kind != 'q' {
					return invalid("Syntax error: expected a column name near %q", t.text)
				}
				cols = append(cols, t.text)
				if p.accept(")") {
					break
				}
				if err := p.expect(","); err != nil {
					return invalid("Syntax error: %v", err)
				}
			}
		} else {
			for _, fl := range target.Meta.Schema.Fields {
				cols = append(cols, fl.Name)
			}
		}
		if err := p.expect("SELECT"); err != nil {
			return invalid("Syntax error: bqfake supports INSERT ... SELECT only: %v", err)
		}
		var items []expr
		for {
			e, err := p.expr()
			if err != nil {
				return invalid("Syntax error: %v", err)
			}
			if p.accept("AS") {
				p.next()
			}
			items = append(items, e)
			if !p.accept(",") {
				break
			}
		}
		if err := p.expect("FROM"); err != nil {
			return invalid("Syntax error: %v", err)
		}
		srcSegs, err := p.path()
		if err != nil {
			return invalid("Syntax error: %v", err)
		}
		if p.accept("AS") || (!p.eof() && p.peek().kind == 'i') {
			p.next()
		}
		if !p.eof() {
			return invalid("Syntax error: bqfake does not evaluate %q", p.peek().text)
		}
		sd, sref, f := lookup(srcSegs)
		if f != nil {
			return queryResult{}, f
		}
		src := sd.tables[sref.table]
		if src == nil {
			return queryResult{}, &Fault{Reason: "notFound", Message: "Not found: Table " + sref.project + ":" + sref.dataset + "." + sref.table}
		}
		if len(items) != len(cols) {
			return invalid("Inserted row has wrong column count; Has %d, expected %d", len(items), len(cols))
		}
		fields := map[string]*bq.TableFieldSchema{}
		for _, fl := range target.Meta.Schema.Fields {
			fields[strings.ToLower(fl.Name)] = fl
		}
		srcTypes := map[string]string{}
		for _, fl := range src.Meta.Schema.Fields {
			srcTypes[strings.ToLower(fl.Name)] = normType(fl.Type)
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		var out []Row
		for _, in := range src.Rows {
			row := Row{}
			for _, fl := range target.Meta.Schema.Fields {
				row[fl.Name] = nil
			}
			for i, c := range cols {
				fl := fields[strings.ToLower(c)]
				if fl == nil {
					return invalid("Column %s is not present in table %s", c, target.Meta.Id)
				}
				v, err := items[i].eval(&env{row: in, types: srcTypes, now: now})
				if err != nil {
					return invalid("%v", err)
				}
				if v, err = coerce(fl, v); err != nil {
					return invalid("Query column %d has type %v which cannot be inserted into column %s, which has type %s", i+1, err, fl.Name, fl.Type)
				}
				row[fl.Name] = v
			}
			for _, fl := range target.Meta.Schema.Fields {
				if fl.Mode == "REQUIRED" && row[fl.Name] == nil {
					return invalid("Required field %s cannot be null", fl.Name)
				}
			}
			out = append(out, row)
		}
		target.Rows = append(target.Rows, out...)
		target.Meta.NumRows = uint64(len(target.Rows))
		return queryResult{statementType: "INSERT", affected: int64(len(out))}, nil
	}
	return invalid("bqfake: unsupported statement %q", truncate(cfg.Query, 60))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// coerce converts an evaluated value into the target column's stored value; the error is
// the value's type name.
func coerce(f *bq.TableFieldSchema, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	typ := normType(f.Type)
	switch x := v.(type) {
	case string:
		if typ == "STRING" || typ == "DATE" || typ == "DATETIME" {
			return x, nil
		}
		return nil, fmt.Errorf("STRING")
	case jsonValue:
		if typ == "JSON" {
			return string(x), nil
		}
		return nil, fmt.Errorf("JSON")
	case int64:
		switch typ {
		case "INTEGER":
			return x, nil
		case "FLOAT":
			return float64(x), nil
		}
		return nil, fmt.Errorf("INT64")
	case float64:
		if typ == "FLOAT" {
			return x, nil
		}
		return nil, fmt.Errorf("FLOAT64")
	case bool:
		if typ == "BOOLEAN" {
			return x, nil
		}
		return nil, fmt.Errorf("BOOL")
	case time.Time:
		if typ == "TIMESTAMP" {
			return x, nil
		}
		return nil, fmt.Errorf("TIMESTAMP")
	case []byte:
		if typ == "BYTES" {
			return x, nil
		}
		return nil, fmt.Errorf("BYTES")
	}
	return nil, fmt.Errorf("%T", v)
}

// ---- expressions -----------------------------------------------------------------------------

type env struct {
	row   Row
	types map[string]string
	now   time.Time
}

type expr interface {
	eval(e *env) (any, error)
}

type lit struct{ v any }

func (l lit) eval(*env) (any, error) { return l.v, nil }

type colRef struct{ name string }

func (c colRef) eval(e *env) (any, error) {
	for k, v := range e.row {
		if strings.EqualFold(k, c.name) {
			if s, ok := v.(string); ok && e.types[strings.ToLower(k)] == "JSON" {
				return jsonValue(s), nil
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("Unrecognized name: %s", c.name)
}

type call struct {
	name string
	args []expr
}

func (p *parser) expr() (expr, error) {
	t := p.next()
	switch t.kind {
	case 's':
		return lit{t.text}, nil
	case 'n':
		if n, err := strconv.ParseInt(t.text, 10, 64); err == nil {
			return lit{n}, nil
		}
		f, err := strconv.ParseFloat(t.text, 64)
		return lit{f}, err
	case 'i', 'q':
		switch {
		case t.kw("NULL"):
			return lit{nil}, nil
		case t.kw("TRUE"):
			return lit{true}, nil
		case t.kw("FALSE"):
			return lit{false}, nil
		}
		name := t.text
		for p.accept(".") {
			name = p.next().text // alias.column: keep the column; SAFE.FN: keep FN
		}
		if p.accept("(") {
			c := call{name: strings.ToUpper(name)}
			if p.accept(")") {
				return c, nil
			}
			for {
				a, err := p.expr()
				if err != nil {
					return nil, err
				}
				c.args = append(c.args, a)
				if p.accept(")") {
					return c, nil
				}
				if err := p.expect(","); err != nil {
					return nil, err
				}
			}
		}
		return colRef{name}, nil
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}

func (c call) eval(e *env) (any, error) {
	args := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := a.eval(e)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	argc := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d arguments", c.name, n)
		}
		return nil
	}
	switch c.name {
	case "CURRENT_TIMESTAMP":
		return e.now, nil
	case "COALESCE":
		for _, a := range args {
			if a != nil {
				return a, nil
			}
		}
		return nil, nil
	case "TO_HEX":
		if err := argc(1); err != nil || args[0] == nil {
			return nil, err
		}
		b, ok := args[0].([]byte)
		if !ok {
			return nil, fmt.Errorf("No matching signature for function TO_HEX for argument types: %T", args[0])
		}
		return hex.EncodeToString(b), nil
	case "REGEXP_REPLACE":
		if err := argc(3); err != nil {
			return nil, err
		}
		if args[0] == nil {
			return nil, nil
		}
		s, ok1 := args[0].(string)
		pat, ok2 := args[1].(string)
		repl, ok3 := args[2].(string)
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("No matching signature for function REGEXP_REPLACE")
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("Cannot parse regular expression: %v", err)
		}
		return re.ReplaceAllString(s, bqReplacement(repl)), nil
	case "PARSE_JSON":
		if err := argc(1); err != nil || args[0] == nil {
			return nil, err
		}
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("No matching signature for function PARSE_JSON")
		}
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("Invalid input to PARSE_JSON")
		}
		return jsonValue(compact(s)), nil
	case "TO_JSON_STRING":
		if err := argc(1); err != nil {
			return nil, err
		}
		return toJSONString(args[0]), nil
	case "JSON_QUERY", "JSON_EXTRACT", "JSON_VALUE", "JSON_EXTRACT_SCALAR":
		if err := argc(2); err != nil || args[0] == nil {
			return nil, err
		}
		var doc string
		isJSON := false
		switch x := args[0].(type) {
		case string:
			doc = x
		case jsonValue:
			doc, isJSON = string(x), true
		default:
			return nil, fmt.Errorf("No matching signature for function %s", c.name)
		}
		path, ok := args[1].(string)
		if !ok {
			return nil, fmt.Errorf("%s: the JSONPath must be a string literal", c.name)
		}
		raw, err := jsonPath(doc, path)
		if err != nil || raw == nil {
			return nil, err
		}
		if c.name == "JSON_VALUE" || c.name == "JSON_EXTRACT_SCALAR" {
			var v any
			_ = json.Unmarshal(raw, &v)
			switch x := v.(type) {
			case string:
				return x, nil
			case map[string]any, []any, nil:
				return nil, nil
			default:
				return compact(string(raw)), nil
			}
		}
		if string(raw) == "null" && !isJSON {
			return nil, nil
		}
		if isJSON {
			return jsonValue(compact(string(raw))), nil
		}
		return compact(string(raw)), nil
	}
	return nil, fmt.Errorf("Function not found: %s (bqfake)", c.name)
}

// bqReplacement turns a GoogleSQL replacement (\1) into Go's (${1}).
func bqReplacement(r string) string {
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		switch {
		case r[i] == '\\' && i+1 < len(r) && r[i+1] >= '0' && r[i+1] <= '9':
			b.WriteString("${" + string(r[i+1]) + "}")
			i++
		case r[i] == '\\' && i+1 < len(r):
			b.WriteByte(r[i+1])
			i++
		case r[i] == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(r[i])
		}
	}
	return b.String()
}

func compact(s string) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(strings.TrimSpace(s))); err != nil {
		return s
	}
	return buf.String()
}

func toJSONString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case jsonValue:
		return string(x)
	case time.Time:
		return `"` + x.UTC().Format("2006-01-02T15:04:05.999999Z") + `"`
	case []byte:
		b, _ := json.Marshal(x) // base64, as BigQuery
		return string(b)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonPath navigates doc along a GoogleSQL JSONPath: $, .key, ."key", ['key'], ["key"],
// [n]. It returns the raw JSON of the target, nil if missing.
func jsonPath(doc, path string) (json.RawMessage, error) {
	if !strings.HasPrefix(path, "$") {
		return nil, fmt.Errorf("JSONPath must start with '$'")
	}
	cur := json.RawMessage(doc)
	rest := path[1:]
	for rest != "" {
		var key string
		idx := -1
		switch {
		case strings.HasPrefix(rest, `."`):
			end := strings.Index(rest[2:], `"`)
			if end < 0 {
				return nil, fmt.Errorf("invalid JSONPath %s", path)
			}
			key, rest = rest[2:2+end], rest[3+end:]
		case strings.HasPrefix(rest, "."):
			end := strings.IndexAny(rest[1:], ".[")
			if end < 0 {
				end = len(rest) - 1
			}
			key, rest = rest[1:1+end], rest[1+end:]
		case strings.HasPrefix(rest, "['"), strings.HasPrefix(rest, `["`):
			q := rest[1:2]
			end := strings.Index(rest[2:], q+"]")
			if end < 0 {
				return nil, fmt.Errorf("invalid JSONPath %s", path)
			}
			key, rest = rest[2:2+end], rest[4+end:]
		case strings.HasPrefix(rest, "["):
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("invalid JSONPath %s", path)
			}
			n, err := strconv.Atoi(rest[1:end])
			if err != nil {
				return nil, fmt.Errorf("invalid JSONPath %s", path)
			}
			idx, rest = n, rest[end+1:]
		default:
			return nil, fmt.Errorf("invalid JSONPath %s", path)
		}
		if idx >= 0 {
			var arr []json.RawMessage
			if json.Unmarshal(cur, &arr) != nil || idx >= len(arr) {
				return nil, nil
			}
			cur = arr[idx]
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(cur, &obj) != nil {
			return nil, nil
		}
		v, ok := obj[key]
		if !ok {
			return nil, nil
		}
		cur = v
	}
	return cur, nil
}
