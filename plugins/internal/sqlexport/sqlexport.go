// Package sqlexport is what the table destinations on the sql capability (clickhouse,
// redshift) share: the connection fields bound to sql.*, table-name checks, the stage table
// and load id of a run keyed by (run_id, generation), the run-column to table-column mapping
// of a load, and error classification. It uses only the ABI (packages abi and sdk), like a
// third-party plugin.
package sqlexport

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// LoadIDColumn is the column every row the plugins write carries: the (run_id, generation)
// that loaded it, so that an automatic retry skips the rows its earlier attempts already
// moved, while a deliberate re-run (a higher generation) writes them again.
const LoadIDColumn = "_sluice_load_id"

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// CheckTable checks a table name given in field: an unquoted identifier the host's load
// accepts, not one of the plugins' own stage tables.
func CheckTable(field, name string) error {
	if !identRE.MatchString(name) {
		return sdk.FieldError(field, "%q is not a table name: letters, digits and _, starting with a letter or _, at most 63", name)
	}
	if strings.HasPrefix(strings.ToLower(name), abi.SQLStagePrefix) {
		return sdk.FieldError(field, "%q: names starting with %s are the plugins' stage tables", name, abi.SQLStagePrefix)
	}
	return nil
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// StageName is the run's stage table: sluice_stage_<run>_g<generation>, lower case, at most
// 63 characters. A retry of the same run (same generation) finds, drops and recreates it.
func StageName(runID string, generation int) string {
	run := notIdent.ReplaceAllString(strings.ToLower(runID), "_")
	suffix := "_g" + strconv.Itoa(generation)
	if max := 63 - len(abi.SQLStagePrefix) - len(suffix); len(run) > max {
		run = run[len(run)-max:]
	}
	return abi.SQLStagePrefix + run + suffix
}

// LoadID is the value of LoadIDColumn for the run: run_id/generation.
func LoadID(runID string, generation int) string { return runID + "/" + strconv.Itoa(generation) }

// TableColumn is the table column a run column is written to: PostHog's names (inserted_at
// is _inserted_at), the others as they are.
func TableColumn(run string) string {
	if run == "inserted_at" {
		return "_inserted_at"
	}
	return run
}

// LoadColumns maps the run's columns to the stage's: every run column whose table column is
// in table, in the run's order. It fails when a column the event schema requires (uuid) has
// no place.
func LoadColumns(run []abi.Column, table []string) ([]abi.ColumnSelect, error) {
	var out []abi.ColumnSelect
	for _, c := range run {
		if as := TableColumn(c.Name); slices.Contains(table, as) {
			out = append(out, abi.ColumnSelect{Name: c.Name, As: as})
		}
	}
	if !slices.ContainsFunc(out, func(c abi.ColumnSelect) bool { return c.Name == "uuid" }) {
		return nil, fmt.Errorf("the run has no uuid column, or the table none to receive it")
	}
	return out, nil
}

// Names lists the table columns of a load, each quoted for driver, joined with ", ".
func Names(driver string, cols []abi.ColumnSelect) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = sdk.QuoteIdent(driver, c.As)
	}
	return strings.Join(q, ", ")
}

// Base is sdk.Base with the package's Classify: embed it in a destination.
type Base struct{ sdk.Base }

// Classify is the package's Classify (sdk.Classifier): the server's code decides.
func (Base) Classify(e *abi.Error, attempt int) abi.Classification { return Classify(e, attempt) }

// Classify decides a failed run: the database's code first (sdk.ClassifySQL: connection
// faults, serialization failures and lock timeouts retry; authentication, permissions,
// missing objects, bad SQL and data fail), then sdk.DefaultClassify.
func Classify(e *abi.Error, attempt int) abi.Classification {
	if c, ok := sdk.ClassifySQL(e); ok {
		return c
	}
	return sdk.DefaultClassify(e, attempt)
}

// Connection are the connection fields, bound to the sql capability: driver (fixed), host,
// port (defaultPort), database, user and password (a secret the plugin never sees).
func Connection(driver string, defaultPort int, defaultUser string) []abi.Field {
	return []abi.Field{
		{Name: "driver", Type: abi.TypeString, Default: driver, Enum: []string{driver}, Binding: "sql.driver",
			Description: "The sql capability's driver family (fixed: " + driver + ")."},
		{Name: "host", Type: abi.TypeString, Required: true, Binding: "sql.host",
			Description: "Host name or IP address of the server."},
		{Name: "port", Type: abi.TypeInteger, Default: float64(defaultPort), Binding: "sql.port",
			Description: "Port of the server."},
		{Name: "database", Type: abi.TypeString, Required: true, Binding: "sql.database",
			Description: "Database to connect to."},
		{Name: "user", Type: abi.TypeString, Required: defaultUser == "", Default: nonEmpty(defaultUser), Binding: "sql.user",
			Description: "User name."},
		{Name: "password", Type: abi.TypeString, Secret: true, Binding: "sql.password",
			Description: "Password (kept by the host; the plugin never sees it)."},
	}
}

func nonEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Rows reads a count query's single integer.
func Rows(r abi.SQLQueryResult) (int64, error) {
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
		return 0, fmt.Errorf("a count query answered %d rows", len(r.Rows))
	}
	switch v := r.Rows[0][0].(type) {
	case float64:
		return int64(v), nil
	case string: // UInt64 past int64, or numeric as text
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("a count query answered %T", r.Rows[0][0])
}

// Columns lists a table's columns: a query of no rows answers its column names.
func Columns(driver, table string) ([]string, error) {
	r, err := sdk.SQLQuery("SELECT * FROM "+sdk.QuoteIdent(driver, table)+" LIMIT 0", 1)
	if err != nil {
		return nil, err
	}
	return r.Columns, nil
}

// TableStep is a destination test's "table" step: the table's columns, or that the first
// run will create it (the server's error code missing: no such table).
func TableStep(t *sdk.TestSteps, driver, table, missing string) {
	cols, err := Columns(driver, table)
	var he *sdk.HostError
	switch {
	case err == nil:
		t.Step("table", nil, "table "+table+" exists with columns "+strings.Join(cols, ", "))
	case errors.As(err, &he) && he.Err.Code == missing:
		t.Step("table", nil, "table "+table+" does not exist yet: the first run creates it")
	default:
		t.Step("table", err, "")
	}
}
