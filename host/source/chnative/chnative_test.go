package chnative_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sluicehq/sluice/host/source/chnative"
)

// options reads SLUICE_TEST_CLICKHOUSE_DSN (a native DSN: ClickHouse 18.16 here).
func options(t *testing.T) chnative.Options {
	dsn := os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("SLUICE_TEST_CLICKHOUSE_DSN not set (run .ci/services/clickhouse.sh)")
	}
	o, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if o.Protocol != clickhouse.Native {
		t.Fatalf("SLUICE_TEST_CLICKHOUSE_DSN %s is not a native DSN", dsn)
	}
	return chnative.Options{Addrs: o.Addr, Database: o.Auth.Database, User: o.Auth.Username,
		Password: o.Auth.Password, DialTimeout: 5 * time.Second, ClientName: "chnative-test"}
}

func dial(t *testing.T, o chnative.Options) *chnative.Conn {
	c, err := chnative.Dial(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestQueryBlocks reads 100,000 rows in blocks of 1,000 (set with Exec) into reused columns,
// with and without compression, and checks every value and the block sizes.
func TestQueryBlocks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method compress.Method
		on     bool
	}{{"plain", compress.None, false}, {"lz4", compress.LZ4, true}, {"zstd", compress.ZSTD, true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t)
			o.Compress, o.Compression = tc.on, tc.method
			c := dial(t, o)
			ctx := context.Background()
			if err := c.Exec(ctx, "SET max_block_size = 1000"); err != nil {
				t.Fatal(err)
			}
			var num proto.ColUInt64
			var str proto.ColStr
			res := proto.Results{{Name: "number", Data: &num}, {Name: "s", Data: &str}}
			next, blocks := uint64(0), 0
			err := c.Query(ctx, "SELECT number, toString(number) AS s FROM system.numbers LIMIT 100000", res, func(rows int) error {
				blocks++
				if rows > 1000 {
					return fmt.Errorf("block of %d rows, max_block_size 1000", rows)
				}
				for i := range rows {
					if num[i] != next || string(str.RowBytes(i)) != strconv.FormatUint(next, 10) {
						return fmt.Errorf("row %d: %d %q", next, num[i], str.RowBytes(i))
					}
					next++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next != 100000 || blocks < 100 {
				t.Fatalf("%d rows in %d blocks, want 100000 in >= 100", next, blocks)
			}
			// The connection stays usable after a complete result.
			if err := c.Exec(ctx, "SELECT 1 WHERE 0"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLowCardinalityArrivesPlain: below revision 54405 the server converts LowCardinality
// columns to their plain type, so a String column reads them.
func TestLowCardinalityArrivesPlain(t *testing.T) {
	c := dial(t, options(t))
	var str proto.ColStr
	var got []string
	err := c.Query(context.Background(), "SELECT toLowCardinality(toString(number % 3)) AS s FROM system.numbers LIMIT 6",
		proto.Results{{Name: "s", Data: &str}}, func(rows int) error {
			for i := range rows {
				got = append(got, str.Row(i))
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "0,1,2,0,1,2" {
		t.Fatalf("got %q", got)
	}
}

// TestServerErrors: a failing query and a wrong password come back as *Exception with the
// server's code.
func TestServerErrors(t *testing.T) {
	o := options(t)
	c := dial(t, o)
	var one proto.ColUInt8
	err := c.Query(context.Background(), "SELECT throwIf(number = 3) AS x FROM system.numbers LIMIT 10",
		proto.Results{{Name: "x", Data: &one}}, func(int) error { return nil })
	var ex *chnative.Exception
	if !errors.As(err, &ex) || ex.Code != 395 {
		t.Fatalf("err %v, want a server exception 395 (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)", err)
	}
	if err := c.Exec(context.Background(), "SET no_such_setting_sluice = 1"); !errors.As(err, &ex) || ex.Code != 115 {
		t.Fatalf("err %v, want a server exception 115 (UNKNOWN_SETTING)", err)
	}
	bad := o
	bad.Password = "wrong password"
	bad.User = "default"
	if _, err := chnative.Dial(context.Background(), bad); !errors.As(err, &ex) {
		t.Fatalf("dial with a wrong password: %v, want a server exception", err)
	}
	closed := o
	closed.Addrs = []string{"127.0.0.1:1"}
	if _, err := chnative.Dial(context.Background(), closed); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

// TestCallbackErrorAndCancel: onBlock's error is returned as is; a cancelled context stops a
// query that would run for seconds and returns the context's error.
func TestCallbackErrorAndCancel(t *testing.T) {
	o := options(t)
	stop := errors.New("stop here")
	c := dial(t, o)
	var num proto.ColUInt64
	err := c.Query(context.Background(), "SELECT number FROM system.numbers", proto.Results{{Name: "number", Data: &num}},
		func(int) error { return stop })
	if err != stop {
		t.Fatalf("err %v, want the callback's error as is", err)
	}

	c = dial(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var x proto.ColUInt8
	start := time.Now()
	err = c.Query(ctx, "SELECT sleep(3) AS x", proto.Results{{Name: "x", Data: &x}}, func(int) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancel took %s", el)
	}
}
