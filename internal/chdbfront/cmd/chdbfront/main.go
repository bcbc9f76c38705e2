// Command chdbfront serves ClickHouse's HTTP interface on a loopback address over an
// embedded chDB session, so clickhouse-go (Protocol: clickhouse.HTTP) can test against a
// current ClickHouse engine:
//
//	CHDB_LIB_PATH=/path/libchdb.so chdbfront -listen 127.0.0.1:8124 -path DIR
//
// chdb-go loads libchdb.so when the program starts (CHDB_LIB_PATH, else the system's
// library path) and exits with a panic if it cannot. See package chdbfront for the
// protocol it speaks and .ci/services/chdb.sh for how CI starts it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	chdbpurego "github.com/chdb-io/chdb-go/chdb-purego"

	"github.com/sluicehq/sluice/internal/chdbfront"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8124", "loopback address to listen on")
	path := flag.String("path", "", "chDB data directory (default: a temporary directory removed on exit)")
	quiet := flag.Bool("quiet", false, "do not log failed queries")
	flag.Parse()
	log.SetPrefix("chdbfront: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := run(*listen, *path, *quiet); err != nil {
		log.Fatal(err)
	}
}

func run(listen, path string, quiet bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing to listen on %s: loopback addresses only", listen)
	}
	if path == "" {
		dir, err := os.MkdirTemp("", "chdbfront-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = dir
	}
	tmp := path + "/.inserts"
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	start := time.Now()
	conn, err := chdbpurego.NewConnectionFromConnString(path)
	if err != nil {
		return fmt.Errorf("chdb session at %s: %w", path, err)
	}
	defer conn.Close()
	opts := chdbfront.Options{TempDir: tmp}
	if !quiet {
		opts.Logf = log.Printf
	}
	srv, err := chdbfront.New(engine{conn}, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("chDB %s (session %s, opened in %s) serving ClickHouse HTTP on http://%s",
		srv.Version(), path, time.Since(start).Round(time.Millisecond), ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// engine adapts a chDB connection to chdbfront.Engine.
type engine struct{ c chdbpurego.ChdbConn }

func (e engine) Exec(sql, format string) ([]byte, error) {
	r, err := e.c.Query(sql, format)
	if err != nil {
		return nil, err
	}
	defer r.Free()
	if err := r.Error(); err != nil {
		return nil, err
	}
	return bytes.Clone(r.Buf()), nil
}

func (e engine) Stream(sql, format string) (chdbfront.Stream, error) {
	s, err := e.c.QueryStreaming(sql, format)
	if err != nil {
		return nil, err
	}
	return &stream{s: s}, nil
}

type stream struct {
	s    chdbpurego.ChdbStreamResult
	done bool
}

func (s *stream) Next() ([]byte, error) {
	if s.done {
		return nil, nil
	}
	c := s.s.GetNext()
	if c == nil {
		s.done = true
		return nil, s.s.Error()
	}
	if err := c.Error(); err != nil {
		s.done = true
		return nil, err
	}
	if c.Len() == 0 {
		s.done = true
		return nil, s.s.Error()
	}
	return c.Buf(), nil
}

func (s *stream) Close() { s.s.Free() }
