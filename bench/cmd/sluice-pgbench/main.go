// Command sluice-pgbench is one side of the PostgreSQL destination benchmark (bench/postgres.sh):
// it exports prepared demo events through the postgres plugin (bin/plugins/postgres.wasm)
// in the plugin runtime with the sql capability bound as a host binds it: the host COPYs
// every batch into the stage table, the plugin moves the stage into the target in one
// transaction. The other side is psql's \copy of the same rows as CSV into a table of the
// same columns.
//
//	sluice-pgbench -prepare /tmp/events.slb -events 1000000      # write SLB1 batches once
//	sluice-pgbench -run /tmp/events.slb -dsn postgres://...      # TRUNCATE the target, export
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/bench"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/host/sqlcap"
	"github.com/sluicehq/sluice/internal/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-pgbench:", err)
		os.Exit(1)
	}
}

func run() error {
	prepare := flag.String("prepare", "", "write -events demo events as SLB1 batches of -batch rows into this file")
	events := flag.Int("events", 1_000_000, "events to prepare")
	batchRows := flag.Int("batch", 10_000, "rows per batch")
	runFile := flag.String("run", "", "export the batches of this file")
	dsn := flag.String("dsn", os.Getenv("SLUICE_TEST_POSTGRES_URL"), "PostgreSQL URL (loopback) of the target database")
	table := flag.String("table", "events_sluice", "target table (schema public)")
	wasm := flag.String("wasm", "bin/plugins/postgres.wasm", "the postgres plugin")
	flag.Parse()
	ctx := context.Background()
	switch {
	case *prepare != "":
		return writeBatches(*prepare, *events, *batchRows)
	case *runFile != "":
		return export(ctx, *runFile, *dsn, *table, *wasm)
	}
	return errors.New("give -prepare FILE or -run FILE")
}

func writeBatches(path string, events, rows int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	n := (events + rows - 1) / rows
	span := bench.IntervalEnd.Sub(bench.IntervalStart) / time.Duration(n)
	for i := range n {
		k := min(rows, events-i*rows)
		start := bench.IntervalStart.Add(span * time.Duration(i))
		evs := demo.Events(k, start, start.Add(span), uint64(i)+1)
		bw := abi.NewBatchWriter(abi.EventColumns, make([]byte, 0, k*600))
		for j := range evs {
			bw.AppendEvent(&evs[j])
			bw.EndRow()
		}
		b := bw.Bytes()
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[:4], uint32(len(b)))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(k))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func export(ctx context.Context, path, dsn, table, wasmPath string) error {
	u, err := url.Parse(dsn)
	if err != nil || dsn == "" {
		return fmt.Errorf("-dsn: %q: %v", dsn, err)
	}
	tStart := time.Now()
	defer func() { fmt.Printf("process work %s\n", time.Since(tStart).Round(time.Millisecond)) }()
	// The target starts empty every time, as psql's side does.
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, "TRUNCATE TABLE "+pgx.Identifier{table}.Sanitize())
	c.Close(ctx)
	if err != nil && !strings.Contains(err.Error(), "42P01") { // a missing table is created by the run
		return err
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return err
	}
	rt, err := runtime.New(ctx, runtime.Config{CacheDir: os.TempDir() + "/sluice-test-wazero-cache"})
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, wasm, []string{abi.CapSQL}, runtime.Limits{})
	if err != nil {
		return err
	}
	pools := sqlcap.NewPools(sqlcap.Config{AllowLoopback: true})
	defer pools.Close()
	params := map[string]string{"driver": "postgres", "host": u.Hostname(), "port": u.Port(), "database": u.Path[1:],
		"schema": "public", "user": u.User.Username(), "tls": "disable"}
	if pw, ok := u.User.Password(); ok {
		params["password"] = pw
	}
	b, err := sqlcap.Bind(pools, params)
	if err != nil {
		return err
	}
	defer b.Close()
	t0 := time.Now()
	cfg := map[string]any{"host": u.Hostname(), "port": u.Port(), "database": u.Path[1:], "schema": "public",
		"table_name": table, "user": u.User.Username(), "driver": "postgres", "has_self_signed_cert": false}
	s, err := p.Open(ctx, abi.OpenRequest{RunID: "bench-run", ExportID: "bench", Attempt: 1, IntervalStart: bench.IntervalStart,
		IntervalEnd: bench.IntervalEnd, Config: cfg, Columns: abi.EventColumns}, runtime.Bindings{SQL: b})
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		n := int(binary.LittleEndian.Uint32(hdr[:4]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if err := s.WriteBatch(ctx, buf, int(binary.LittleEndian.Uint32(hdr[4:]))); err != nil {
			return err
		}
	}
	t1 := time.Now()
	res, err := s.Finish(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("exported %d records into %s in %s (open and load %s, move %s)\n", res.Records, table,
		time.Since(t0).Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	return nil
}
