package sdk

import (
	"testing"

	"github.com/sluicehq/sluice/abi"
)

func TestClassifySQL(t *testing.T) {
	cases := []struct {
		code    string
		outcome string // "": not a known SQL code
	}{
		{"28P01", abi.OutcomeFail},  // invalid_password
		{"28000", abi.OutcomeFail},  // invalid_authorization_specification
		{"42P01", abi.OutcomeFail},  // undefined_table
		{"3D000", abi.OutcomeFail},  // invalid_catalog_name
		{"23505", abi.OutcomeFail},  // unique_violation
		{"40001", abi.OutcomeRetry}, // serialization_failure
		{"40P01", abi.OutcomeRetry}, // deadlock_detected
		{"55P03", abi.OutcomeRetry}, // lock_not_available
		{"57P01", abi.OutcomeRetry}, // admin_shutdown (pg_terminate_backend)
		{"08006", abi.OutcomeRetry}, // connection_failure
		{"53300", abi.OutcomeRetry}, // too_many_connections
		{"connection", abi.OutcomeRetry},
		{"timeout", abi.OutcomeRetry},
		{"clickhouse_516", abi.OutcomeFail},
		{"clickhouse_193", abi.OutcomeFail},
		{"clickhouse_60", abi.OutcomeFail},
		{"clickhouse_209", abi.OutcomeRetry},
		{"clickhouse_252", abi.OutcomeRetry},
		{"clickhouse_1", ""},
		{"XX000", ""},
		{"NoSuchBucket", ""},
		{"", ""},
	}
	for _, c := range cases {
		cl, ok := ClassifySQL(&abi.Error{Code: c.code, Status: "fatal_io"})
		if ok != (c.outcome != "") || cl.Outcome != c.outcome {
			t.Errorf("%q: %+v ok=%v, want %q", c.code, cl, ok, c.outcome)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	cases := []struct{ driver, in, want string }{
		{abi.SQLDriverPostgres, "events", `"events"`},
		{abi.SQLDriverPostgres, `we"ird`, `"we""ird"`},
		{abi.SQLDriverClickHouse, "events", "`events`"},
		{abi.SQLDriverClickHouse, "a`b\\c", "`a\\`b\\\\c`"},
	}
	for _, c := range cases {
		if got := QuoteIdent(c.driver, c.in); got != c.want {
			t.Errorf("QuoteIdent(%s, %q) = %s, want %s", c.driver, c.in, got, c.want)
		}
	}
}
