package dbxfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sqlError is a statement's failure: Databricks answers error_code BAD_REQUEST for SQL
// errors, the error class in brackets at the start of the message.
type sqlError struct{ code, msg string }

func badSQL(class, format string, args ...any) *sqlError {
	return &sqlError{code: "BAD_REQUEST", msg: "[" + class + "] " + fmt.Sprintf(format, args...)}
}

const ident = "(?:`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_]*)"
const qname = ident + `(?:\s*\.\s*` + ident + `){0,2}`

var (
	reSelectOne    = regexp.MustCompile(`(?is)^SELECT\s+(\d+)$`)
	reCreateVolume = regexp.MustCompile(`(?is)^CREATE\s+VOLUME\s+(IF\s+NOT\s+EXISTS\s+)?(` + qname + `)$`)
	reCreateTable  = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(` + qname + `)\s*\((.*)\)$`)
	reDropTable    = regexp.MustCompile(`(?is)^DROP\s+TABLE\s+(IF\s+EXISTS\s+)?(` + qname + `)$`)
	reCopyInto     = regexp.MustCompile(`(?is)^COPY\s+INTO\s+(` + qname + `)\s+FROM\s+'((?:[^'\\]|\\.)*)'\s+FILEFORMAT\s*=\s*PARQUET$`)
	reDelete       = regexp.MustCompile(`(?is)^DELETE\s+FROM\s+(` + qname + `)$`)
	reCount        = regexp.MustCompile(`(?is)^SELECT\s+COUNT\s*\(\s*\*\s*\)\s+FROM\s+(` + qname + `)$`)
	reMerge        = regexp.MustCompile(`(?is)^MERGE\s+(WITH\s+SCHEMA\s+EVOLUTION\s+)?INTO\s+(` + qname + `)\s+AS\s+t\s+USING\s+\(\s*SELECT\s+(.*)\s+FROM\s+(` + qname + `)\s*\)\s+AS\s+s\s+ON\s+t\.` + "`?uuid`?" + `\s*=\s*s\.` + "`?uuid`?" + `\s+WHEN\s+NOT\s+MATCHED\s+THEN\s+INSERT\s+(\*|\((.*)\)\s+VALUES\s+\((.*)\))$`)
	reIdent        = regexp.MustCompile(`(?s)` + ident)
	reSelItem      = regexp.MustCompile(`(?is)^(?:(` + ident + `)|PARSE_JSON\s*\(\s*(` + ident + `)\s*\)\s+AS\s+(` + ident + `)|current_timestamp\s*\(\s*\)\s+AS\s+(` + ident + `))$`)
	reSValue       = regexp.MustCompile(`(?is)^s\.(` + ident + `)$`)
)

// unquote turns an identifier into its lower-case name.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "`") {
		s = strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return strings.ToLower(s)
}

// splitName splits a qualified name into catalog, schema, name (three parts required: the
// plugin always qualifies).
func splitName(q string) (string, bool) {
	parts := reIdent.FindAllString(q, -1)
	if len(parts) != 3 {
		return "", false
	}
	for i := range parts {
		parts[i] = unquote(parts[i])
	}
	return strings.Join(parts, "."), true
}

// splitTop splits s at commas outside parentheses and backticks.
func splitTop(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i, r := range s {
		switch {
		case r == '`':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
		case r == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

var types = map[string]bool{"STRING": true, "BIGINT": true, "TIMESTAMP": true, "VARIANT": true, "INT": true, "DOUBLE": true, "BOOLEAN": true}

// exec runs one statement. Called with f.mu held.
func (f *Fake) exec(sql string) (*result, *sqlError) {
	sql = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(sql), ";"))
	if m := reSelectOne.FindStringSubmatch(sql); m != nil {
		return &result{cols: []string{m[1]}, rows: [][]string{{m[1]}}}, nil
	}
	if m := reCreateVolume.FindStringSubmatch(sql); m != nil {
		name, ok := splitName(m[2])
		if !ok {
			return nil, badSQL("INVALID_IDENTIFIER", "volume name %s must be catalog.schema.volume", m[2])
		}
		if f.volumes[name] && m[1] == "" {
			return nil, badSQL("VOLUME_ALREADY_EXISTS", "Volume %s already exists.", name)
		}
		f.volumes[name] = true
		return &result{}, nil
	}
	if m := reCreateTable.FindStringSubmatch(sql); m != nil {
		return f.createTable(m[1] != "", m[2], m[3])
	}
	if m := reDropTable.FindStringSubmatch(sql); m != nil {
		name, ok := splitName(m[2])
		if !ok {
			return nil, badSQL("INVALID_IDENTIFIER", "table name %s must be catalog.schema.table", m[2])
		}
		if _, exists := f.tables[name]; !exists && m[1] == "" {
			return nil, badSQL("TABLE_OR_VIEW_NOT_FOUND", "The table or view %s cannot be found. SQLSTATE: 42P01", name)
		}
		delete(f.tables, name)
		return &result{}, nil
	}
	if m := reCopyInto.FindStringSubmatch(sql); m != nil {
		path := strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(m[2])
		return f.copyInto(m[1], path)
	}
	if m := reMerge.FindStringSubmatch(sql); m != nil {
		return f.merge(m)
	}
	if m := reDelete.FindStringSubmatch(sql); m != nil {
		t, err := f.table(m[1])
		if err != nil {
			return nil, err
		}
		n := len(t.Rows)
		t.Rows = nil
		return &result{cols: []string{"num_affected_rows"}, rows: [][]string{{strconv.Itoa(n)}}}, nil
	}
	if m := reCount.FindStringSubmatch(sql); m != nil {
		t, err := f.table(m[1])
		if err != nil {
			return nil, err
		}
		return &result{cols: []string{"count(1)"}, rows: [][]string{{strconv.Itoa(len(t.Rows))}}}, nil
	}
	return nil, badSQL("PARSE_SYNTAX_ERROR", "Syntax error: dbxfake does not support the statement %q. SQLSTATE: 42601", truncate(sql, 200))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (f *Fake) table(q string) (*Table, *sqlError) {
	name, ok := splitName(q)
	if !ok {
		return nil, badSQL("INVALID_IDENTIFIER", "table name %s must be catalog.schema.table", q)
	}
	t, ok := f.tables[name]
	if !ok {
		return nil, badSQL("TABLE_OR_VIEW_NOT_FOUND", "The table or view `%s` cannot be found. SQLSTATE: 42P01", name)
	}
	return t, nil
}

func (f *Fake) createTable(ifNotExists bool, q, defs string) (*result, *sqlError) {
	name, ok := splitName(q)
	if !ok {
		return nil, badSQL("INVALID_IDENTIFIER", "table name %s must be catalog.schema.table", q)
	}
	if _, exists := f.tables[name]; exists {
		if ifNotExists {
			return &result{}, nil
		}
		return nil, badSQL("TABLE_OR_VIEW_ALREADY_EXISTS", "Cannot create table or view `%s` because it already exists. SQLSTATE: 42P07", name)
	}
	t := &Table{Name: name, loaded: map[string]bool{}}
	seen := map[string]bool{}
	for _, d := range splitTop(defs) {
		id := reIdent.FindString(d)
		typ := strings.ToUpper(strings.TrimSpace(d[len(id):]))
		if id == "" || !types[typ] {
			return nil, badSQL("PARSE_SYNTAX_ERROR", "Syntax error at or near '%s': a column is `name TYPE` with TYPE one of STRING, BIGINT, TIMESTAMP, VARIANT, INT, DOUBLE, BOOLEAN", d)
		}
		col := unquote(id)
		if seen[col] {
			return nil, badSQL("COLUMN_ALREADY_EXISTS", "The column `%s` already exists. SQLSTATE: 42711", col)
		}
		seen[col] = true
		t.Columns = append(t.Columns, Column{Name: col, Type: typ})
	}
	f.tables[name] = t
	return &result{}, nil
}

func (t *Table) column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// copyInto loads every Parquet file at path (a file, or a directory's files) not yet
// loaded into the table, converting each column to the table's type by name.
func (f *Fake) copyInto(q, path string) (*result, *sqlError) {
	t, err := f.table(q)
	if err != nil {
		return nil, err
	}
	var paths []string
	dir := strings.TrimSuffix(path, "/")
	for _, p := range sortedKeys(f.files) {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return nil, badSQL("PATH_NOT_FOUND", "Path does not exist: %s. SQLSTATE: 42K03", path)
	}
	inserted := 0
	for _, p := range paths {
		if t.loaded[p] {
			continue // COPY INTO is idempotent: a loaded file is skipped
		}
		rows, derr := decodeParquet(f.files[p])
		if errors.Is(derr, errIllegalUUID) {
			return nil, badSQL("PARQUET_TYPE_ILLEGAL", "%v", derr)
		}
		if derr != nil {
			return nil, badSQL("CANNOT_READ_FILE_FOOTER", "Could not read footer for file %s: %v", p, derr)
		}
		for _, row := range rows {
			out := map[string]any{}
			for name, v := range row {
				c, ok := t.column(name)
				if !ok {
					return nil, badSQL("COPY_INTO_SCHEMA_MISMATCH", "The file %s has a column %s that the table %s does not have; use COPY_OPTIONS ('mergeSchema' = 'true')", p, name, t.Name)
				}
				cv, cerr := v.as(c.Type)
				if cerr != "" {
					return nil, badSQL("DELTA_FAILED_TO_MERGE_FIELDS", "Failed to merge fields '%s': %s", name, cerr)
				}
				out[name] = cv
			}
			for _, c := range t.Columns {
				if _, ok := out[c.Name]; !ok {
					out[c.Name] = nil
				}
			}
			t.Rows = append(t.Rows, out)
			inserted++
		}
		t.loaded[p] = true
	}
	n := strconv.Itoa(inserted)
	return &result{cols: []string{"num_affected_rows", "num_inserted_rows", "num_skipped_corrupt_files"}, rows: [][]string{{n, n, "0"}}}, nil
}

type selItem struct {
	name string // output name
	src  string // stage column ("" for current_timestamp())
	fn   string // "", "parse_json", "now"
}

// merge runs MERGE [WITH SCHEMA EVOLUTION] INTO target AS t USING (SELECT items FROM stage)
// AS s ON t.uuid = s.uuid WHEN NOT MATCHED THEN INSERT (* | (cols) VALUES (s.cols)).
func (f *Fake) merge(m []string) (*result, *sqlError) {
	evolve, items, star := m[1] != "", splitTop(m[3]), m[5] == "*"
	target, err := f.table(m[2])
	if err != nil {
		return nil, err
	}
	stage, err := f.table(m[4])
	if err != nil {
		return nil, err
	}
	var sel []selItem
	types := map[string]string{}
	for _, it := range items {
		sm := reSelItem.FindStringSubmatch(it)
		if sm == nil {
			return nil, badSQL("PARSE_SYNTAX_ERROR", "dbxfake supports `col`, PARSE_JSON(col) AS col and current_timestamp() AS col in the USING select, not %q", it)
		}
		var s selItem
		switch {
		case sm[1] != "":
			s = selItem{name: unquote(sm[1]), src: unquote(sm[1])}
		case sm[2] != "":
			s = selItem{name: unquote(sm[3]), src: unquote(sm[2]), fn: "parse_json"}
		default:
			s = selItem{name: unquote(sm[4]), fn: "now"}
		}
		if s.src != "" {
			c, ok := stage.column(s.src)
			if !ok {
				return nil, badSQL("UNRESOLVED_COLUMN.WITH_SUGGESTION", "A column with name `%s` cannot be resolved. SQLSTATE: 42703", s.src)
			}
			types[s.name] = c.Type
			if s.fn == "parse_json" {
				if c.Type != "STRING" {
					return nil, badSQL("DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE", "PARSE_JSON requires a STRING, %s is %s", s.src, c.Type)
				}
				types[s.name] = "VARIANT"
			}
		} else {
			types[s.name] = "TIMESTAMP"
		}
		sel = append(sel, s)
	}
	// The insert's column list: every selected column (INSERT *), or the named ones.
	var cols []string
	if star {
		for _, s := range sel {
			cols = append(cols, s.name)
		}
	} else {
		names, vals := splitTop(m[6]), splitTop(m[7])
		if len(names) != len(vals) {
			return nil, badSQL("INSERT_COLUMN_ARITY_MISMATCH", "INSERT has %d columns and %d values", len(names), len(vals))
		}
		for i, n := range names {
			vm := reSValue.FindStringSubmatch(vals[i])
			if vm == nil || unquote(vm[1]) != unquote(n) {
				return nil, badSQL("PARSE_SYNTAX_ERROR", "dbxfake supports INSERT (c, ...) VALUES (s.c, ...), got %s = %s", n, vals[i])
			}
			cols = append(cols, unquote(n))
		}
	}
	if _, ok := types["uuid"]; !ok {
		return nil, badSQL("UNRESOLVED_COLUMN.WITH_SUGGESTION", "A column with name s.`uuid` cannot be resolved. SQLSTATE: 42703")
	}
	for _, c := range cols {
		tc, ok := target.column(c)
		if !ok {
			if !evolve || !star {
				return nil, badSQL("DELTA_MERGE_UNRESOLVED_EXPRESSION", "Cannot resolve t.`%s` in INSERT clause given columns %s (MERGE WITH SCHEMA EVOLUTION adds it)", c, colNames(target))
			}
			target.Columns = append(target.Columns, Column{Name: c, Type: types[c]})
			continue
		}
		if st, ok := types[c]; ok && st != tc.Type {
			return nil, badSQL("DELTA_FAILED_TO_MERGE_FIELDS", "Failed to merge incompatible data types %s and %s for column `%s`", tc.Type, st, c)
		}
	}
	held := map[string]bool{}
	for _, r := range target.Rows {
		if u, ok := r["uuid"].(string); ok {
			held[u] = true
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	inserted := 0
	for _, r := range stage.Rows {
		u, _ := r["uuid"].(string)
		if held[u] {
			continue
		}
		vals := map[string]any{}
		for _, s := range sel {
			switch s.fn {
			case "now":
				vals[s.name] = now
			case "parse_json":
				if r[s.src] == nil {
					vals[s.name] = nil
					continue
				}
				v, err := parseJSON(r[s.src].(string))
				if err != nil {
					return nil, badSQL("MALFORMED_RECORD_IN_PARSING", "PARSE_JSON: malformed JSON in %s: %v", s.src, err)
				}
				vals[s.name] = v
			default:
				vals[s.name] = r[s.src]
			}
		}
		row := map[string]any{}
		for _, c := range target.Columns {
			row[c.Name] = nil
		}
		for _, c := range cols {
			row[c] = vals[c]
		}
		target.Rows = append(target.Rows, row)
		if u != "" {
			held[u] = true
		}
		inserted++
	}
	n := strconv.Itoa(inserted)
	return &result{cols: []string{"num_affected_rows", "num_updated_rows", "num_deleted_rows", "num_inserted_rows"},
		rows: [][]string{{n, "0", "0", n}}}, nil
}

func colNames(t *Table) string {
	var out []string
	for _, c := range t.Columns {
		out = append(out, c.Name)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

func parseJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
