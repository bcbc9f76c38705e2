package sdk

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/abi"
)

// ---- ABI 1.1: the sql capability ------------------------------------------------------------
//
// A plugin granted `sql` (manifest capability "sql", built with -tags sluice_abi_1_1) runs
// statements on the one database its export's config binds (fields bound as sql.driver,
// sql.host, sql.port, sql.database, sql.schema, sql.user, sql.password...), and bulk-loads
// batches into tables on the host. It never sees the password. Statements pass the host's
// policy (SPEC 6.2): DDL and DML on tables of the bound schema, TRUNCATE and DROP only of
// tables named sluice_stage_*; anything else is refused with denied. A failure is a
// *HostError whose Err.Code is the server's SQLSTATE (postgres), clickhouse_<n>
// (ClickHouse), "connection" or "timeout"; ClassifySQL decides it.

// SQLExec runs one statement (call("sql", {"op": "exec"})) and returns the rows it affected
// (0 where the server does not count them). Placeholders: $1, $2... (postgres), ? (clickhouse).
func SQLExec(sql string, args ...any) (int64, error) {
	var r abi.SQLExecResult
	err := Call(abi.CapSQL, abi.SQLRequest{Op: abi.SQLOpExec, SQL: sql, Args: sqlArgs(args)}, &r)
	return r.RowsAffected, err
}

// SQLQuery runs one SELECT and returns at most maxRows rows (0: the host's default, 1000;
// at most 10,000 and 1 MiB of rows; Truncated says more were there).
func SQLQuery(sql string, maxRows int, args ...any) (abi.SQLQueryResult, error) {
	var r abi.SQLQueryResult
	err := Call(abi.CapSQL, abi.SQLRequest{Op: abi.SQLOpQuery, SQL: sql, Args: sqlArgs(args), MaxRows: maxRows}, &r)
	return r, err
}

// SQLBegin opens the run's transaction: the statements and loads after it run in it until
// SQLCommit or SQLRollback. One at a time; the host rolls back a transaction still open when
// the run ends. ClickHouse has no transactions: begin, commit and rollback answer
// unimplemented there.
func SQLBegin() error { return sqlTx(abi.SQLOpBegin) }

// SQLCommit commits the run's transaction.
func SQLCommit() error { return sqlTx(abi.SQLOpCommit) }

// SQLRollback rolls the run's transaction back; without one it is a no-op.
func SQLRollback() error { return sqlTx(abi.SQLOpRollback) }

func sqlTx(op string) error { return Call(abi.CapSQL, abi.SQLRequest{Op: op}, nil) }

// SQLLoad copies rows [start, start+count) of the batch (count 0: all from start) into table
// on the host (postgres: COPY FROM STDIN; clickhouse: a native batch insert), inside the
// open transaction if there is one; no record enters the guest. cols maps run columns
// (Name) to table columns (As; empty: the same name). It returns the rows written.
func SQLLoad(b *Batch, table string, cols []abi.ColumnSelect, start, count int) (int64, error) {
	var r abi.SQLLoadResult
	err := Call(abi.CapSQL, abi.SQLRequest{Op: abi.SQLOpLoad, Batch: b.handle, Table: table,
		Columns: cols, Start: start, Count: count}, &r)
	return r.Rows, err
}

// sqlArgs keeps a nil slice nil (no "args" key) and passes values as they are: strings,
// numbers, bools, nil.
func sqlArgs(args []any) []any {
	if len(args) == 0 {
		return nil
	}
	return args
}

// QuoteIdent quotes an SQL identifier for the driver: "name" for postgres (a " doubled),
// `name` for clickhouse (a ` or \ escaped).
func QuoteIdent(driver, name string) string {
	if driver == abi.SQLDriverClickHouse {
		r := strings.NewReplacer("\\", "\\\\", "`", "\\`")
		return "`" + r.Replace(name) + "`"
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// ClassifySQL classifies a failure of call("sql") by its code (abi.SQLCodeRetryable): a
// transient fault (connection, serialization failure, deadlock, lock timeout, shutdown)
// retries, authentication, permissions, missing objects, bad SQL or data fail. ok is false
// for an error without a known SQL code: fall back to DefaultClassify (status-based).
func ClassifySQL(e *abi.Error) (c abi.Classification, ok bool) {
	if e == nil || e.Code == "" {
		return c, false
	}
	retry, known := abi.SQLCodeRetryable(e.Code)
	if !known {
		return c, false
	}
	if retry {
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: fmt.Sprintf("database error %s is transient", e.Code)}, true
	}
	return abi.Classification{Outcome: abi.OutcomeFail, Reason: fmt.Sprintf("database error %s is not retryable", e.Code)}, true
}
