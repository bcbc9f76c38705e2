package abi

// The sql capability (ABI 1.1, SPEC section 6.2): call("sql", SQLRequest) on the one database
// connection the export's config binds (sql.driver postgres or clickhouse, host, port,
// database, schema, user, password). Statements pass the host's statement policy; a load
// copies rows of the current batch into a table on the host (no record enters the guest).

// SQL operations (SQLRequest.Op).
const (
	SQLOpExec     = "exec"     // one statement; answers SQLExecResult
	SQLOpQuery    = "query"    // one SELECT; answers SQLQueryResult
	SQLOpBegin    = "begin"    // opens the run's transaction; answers {}
	SQLOpCommit   = "commit"   // commits it; answers {}
	SQLOpRollback = "rollback" // rolls it back; answers {}
	SQLOpLoad     = "load"     // bulk load of the current batch; answers SQLLoadResult
)

// SQL drivers (binding sql.driver).
const (
	SQLDriverPostgres   = "postgres"
	SQLDriverClickHouse = "clickhouse"
)

// SQLStagePrefix starts the name of every table a plugin may TRUNCATE or DROP: its own stage
// tables (sluice_stage_<anything>).
const SQLStagePrefix = "sluice_stage_"

// SQLRequest is the request of call("sql", ...).
//
// SQL is one statement, with placeholders $1, $2... (postgres) or ? (clickhouse) filled from
// Args, JSON values: a string, a number (an integer when it has no fraction or exponent), a
// bool or null. Load copies rows [Start, Start+Count) of the current batch (its handle in
// Batch; Count 0: to the end) into Table (a name in the bound schema/database, unqualified),
// each run column Name into the table column As (As empty: the same name).
type SQLRequest struct {
	Op        string         `json:"op"`
	SQL       string         `json:"sql,omitempty"`
	Args      []any          `json:"args,omitempty"`
	MaxRows   int            `json:"max_rows,omitempty"`   // query: default 1000, at most 10000
	TimeoutMS int64          `json:"timeout_ms,omitempty"` // exec, query, load: lowers the host's cap
	Batch     uint32         `json:"batch,omitempty"`      // load
	Table     string         `json:"table,omitempty"`      // load
	Columns   []ColumnSelect `json:"columns,omitempty"`    // load: at least one
	Start     int            `json:"start,omitempty"`      // load
	Count     int            `json:"count,omitempty"`      // load
}

// SQLExecResult answers exec.
type SQLExecResult struct {
	RowsAffected int64 `json:"rows_affected"`
}

// SQLQueryResult answers query. Rows hold JSON values: strings, numbers, bools, null;
// timestamps as RFC 3339 strings, uuids as canonical text, other types as their text.
// Truncated: more rows (or more than 1 MiB of them) were there than returned.
type SQLQueryResult struct {
	Columns   []string `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
}

// SQLLoadResult answers load: the rows written.
type SQLLoadResult struct {
	Rows int64 `json:"rows"`
}

// SQL error codes (Error.code of a failed call("sql")): a PostgreSQL SQLSTATE ("28P01"),
// "clickhouse_<n>" for a ClickHouse exception code (clickhouse_516), or, when no server
// answered, SQLCodeConnection (refused, reset, DNS) or SQLCodeTimeout.
const (
	SQLCodeConnection = "connection"
	SQLCodeTimeout    = "timeout"
	SQLCodeClickHouse = "clickhouse_"
)

// SQLCodeRetryable decides a SQL error code: retry (a transient fault: connection,
// serialization failure, deadlock, lock timeout, server shutting down or out of resources)
// or not (authentication, permissions, missing database or table, bad SQL, bad data);
// known is false for a code it does not list. Host and SDK share it: the host turns it into
// the call's status (retryable_io or fatal_io), a plugin's Classify into its outcome.
func SQLCodeRetryable(code string) (retry, known bool) {
	switch code {
	case SQLCodeConnection, SQLCodeTimeout:
		return true, true
	}
	if n, ok := cutClickHouse(code); ok {
		switch n {
		case "3", "159", "202", "209", "210", "241", "242", "252", "319", "425", "999":
			// unexpected EOF, timeout, too many simultaneous queries, socket timeout,
			// network error, memory limit, table read-only, too many parts, unknown status
			// of insert, system error, keeper exception
			return true, true
		case "60", "81", "192", "193", "194", "497", "516", "62", "47", "16", "27", "6", "53", "70", "117":
			// unknown table or database, unknown user, wrong or missing password, access
			// denied, authentication failed, syntax error, unknown identifier, no such
			// column, cannot parse input, cannot parse text, type mismatch, cannot convert
			// type, incorrect data
			return false, true
		}
		return false, false
	}
	if len(code) != 5 {
		return false, false
	}
	switch code {
	case "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "58000", "58030":
		// serialization failure, deadlock, lock not available, query cancelled (statement
		// timeout), admin/crash shutdown, cannot connect now, system and I/O errors
		return true, true
	}
	switch code[:2] {
	case "08", "53": // connection exception, insufficient resources
		return true, true
	case "28", "42", "3D", "3F", "22", "23", "0A", "25", "2B", "44":
		// authorization, syntax or access rule, invalid catalog or schema, data,
		// integrity constraint, feature not supported, transaction state, dependent
		// objects, check option
		return false, true
	}
	return false, false
}

func cutClickHouse(code string) (string, bool) {
	if len(code) > len(SQLCodeClickHouse) && code[:len(SQLCodeClickHouse)] == SQLCodeClickHouse {
		return code[len(SQLCodeClickHouse):], true
	}
	return "", false
}
