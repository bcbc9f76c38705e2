// Package chnative is a minimal client of ClickHouse's native TCP protocol for reading a
// query's result into reused columns (ch-go's proto types): Dial, Exec, Query, Close.
//
// Why not ch-go's client: it sends the query's client info only to servers of revision
// 54420 or later, so every query to ClickHouse 18.16 (revision 54412) fails with "Unknown
// setting". Why not clickhouse-go: it decodes every block into fresh column buffers
// (docs/performance.md). This client announces protocol revision 54404, which every
// server from 18.x to today speaks: no server logs, no profile events, no settings
// serialized as strings (Exec a SET statement instead), and LowCardinality columns come
// as their plain type. It runs one query at a time.
package chnative

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
)

// Revision is the protocol revision the client speaks: block info, temporary tables, server
// timezone, quota key and version patch in the client info; below LowCardinality (54405:
// older clients get such columns converted to their plain type) and server logs (54406).
const Revision = 54404

// Options configure a connection.
type Options struct {
	Addrs                    []string // host:port, tried in order
	Database, User, Password string
	TLS                      *tls.Config // nil: plain TCP
	// Compression of the data blocks: compress.None disables it (the zero value is None).
	Compression compress.Method
	Compress    bool
	DialTimeout time.Duration // default 30 s
	ReadTimeout time.Duration // per packet; default 5 min
	ClientName  string
}

// Conn is one connection.
type Conn struct {
	conn     net.Conn
	r        *proto.Reader
	buf      proto.Buffer
	cw       *compress.Writer // nil without compression
	opts     Options
	server   proto.ServerHello
	hostname string
}

// Exception is an error the server sent.
type Exception struct {
	Code          int32
	Name, Message string
	Next          *Exception // the nested cause, if any
}

func (e *Exception) Error() string {
	s := fmt.Sprintf("%s (%d): %s", e.Name, e.Code, strings.TrimSpace(e.Message))
	if e.Next != nil {
		s += ": " + e.Next.Error()
	}
	return s
}

// Dial connects to the first address that answers and performs the handshake.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	if o.User == "" {
		o.User = "default"
	}
	if len(o.Addrs) == 0 {
		return nil, errors.New("chnative: no address")
	}
	var errs []error
	for _, addr := range o.Addrs {
		c, err := dial(ctx, addr, o)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, fmt.Errorf("chnative: dial: %w", errors.Join(errs...))
}

func dial(ctx context.Context, addr string, o Options) (*Conn, error) {
	nd := &net.Dialer{Timeout: o.DialTimeout}
	var (
		nc  net.Conn
		err error
	)
	if o.TLS != nil {
		nc, err = (&tls.Dialer{NetDialer: nd, Config: o.TLS}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &Conn{conn: nc, r: proto.NewReader(bufio.NewReaderSize(nc, 128<<10)), opts: o}
	c.hostname, _ = os.Hostname()
	if o.Compress {
		c.cw = compress.NewWriter(compress.LevelZero, o.Compression)
	}
	stop := c.watch(ctx)
	err = c.handshake()
	if werr := stop(); werr != nil {
		err = werr
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// watch closes the connection when ctx ends before the returned stop is called; stop
// waits for the watcher and reports ctx's error if it closed the connection.
func (c *Conn) watch(ctx context.Context) (stop func() error) {
	done := make(chan struct{})
	closed := make(chan bool, 1)
	go func() {
		select {
		case <-ctx.Done():
			c.conn.Close()
			closed <- true
		case <-done:
			closed <- false
		}
	}()
	return func() error {
		close(done)
		if <-closed {
			return ctx.Err()
		}
		return nil
	}
}

func (c *Conn) handshake() error {
	c.buf.Reset()
	proto.ClientHello{
		Name:            c.clientName(),
		Major:           1,
		Minor:           0,
		ProtocolVersion: Revision,
		Database:        c.opts.Database,
		User:            c.opts.User,
		Password:        c.opts.Password,
	}.Encode(&c.buf)
	if err := c.flush(); err != nil {
		return fmt.Errorf("chnative: hello: %w", err)
	}
	code, err := c.packet()
	if err != nil {
		return fmt.Errorf("chnative: hello: %w", err)
	}
	switch proto.ServerCode(code) {
	case proto.ServerCodeHello:
		if err := c.server.DecodeAware(c.r, Revision); err != nil {
			return fmt.Errorf("chnative: hello: %w", err)
		}
		return nil
	case proto.ServerCodeException:
		return c.exception()
	default:
		return fmt.Errorf("chnative: hello: unexpected packet %d", code)
	}
}

func (c *Conn) clientName() string {
	if c.opts.ClientName != "" {
		return c.opts.ClientName
	}
	return "chnative"
}

// Server describes the server (name, version, revision).
func (c *Conn) Server() string { return c.server.String() }

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// Exec runs a statement that returns no rows (SET, DDL).
func (c *Conn) Exec(ctx context.Context, query string) error {
	return c.Query(ctx, query, nil, nil)
}

// Query runs query and decodes each data block into results (whose columns are reused:
// their buffers stay as large as the largest block), then calls onBlock with the block's
// row count; the columns are valid until onBlock returns. An error from onBlock stops the
// query (the connection is closed and must not be reused) and is returned as is. When ctx
// ends, the connection is closed and ctx's error returned.
func (c *Conn) Query(ctx context.Context, query string, results proto.Results, onBlock func(rows int) error) (err error) {
	stop := c.watch(ctx)
	defer func() {
		if werr := stop(); werr != nil {
			err = werr
		}
	}()
	if err := c.sendQuery(query); err != nil {
		return fmt.Errorf("chnative: send query: %w", err)
	}
	for {
		code, err := c.packet()
		if err != nil {
			return fmt.Errorf("chnative: read: %w", err)
		}
		switch proto.ServerCode(code) {
		case proto.ServerCodeData:
			rows, err := c.block(results)
			if err != nil {
				return fmt.Errorf("chnative: data: %w", err)
			}
			if rows > 0 {
				if onBlock == nil {
					return errors.New("chnative: rows from a statement run with Exec")
				}
				if err := onBlock(rows); err != nil {
					c.conn.Close() // the rest of the result is not read
					return err
				}
			}
		case proto.ServerCodeException:
			return c.exception()
		case proto.ServerCodeProgress:
			var p proto.Progress
			if err := p.DecodeAware(c.r, Revision); err != nil {
				return fmt.Errorf("chnative: progress: %w", err)
			}
		case proto.ServerCodeProfile:
			var p proto.Profile
			if err := p.DecodeAware(c.r, Revision); err != nil {
				return fmt.Errorf("chnative: profile: %w", err)
			}
		case proto.ServerCodeEndOfStream:
			return nil
		default:
			c.conn.Close()
			return fmt.Errorf("chnative: unexpected packet %d", code)
		}
	}
}

// sendQuery writes the query packet and the empty block that ends the external tables.
func (c *Conn) sendQuery(query string) error {
	c.buf.Reset()
	proto.ClientCodeQuery.Encode(&c.buf)
	c.buf.PutString("") // query id: the server makes one
	// Client info. ch-go sends it only from revision 54420 (its FeatureClientWriteInfo);
	// servers read it from 54032.
	proto.ClientInfo{
		Query:           proto.ClientQueryInitial,
		InitialAddress:  "0.0.0.0:0",
		Interface:       proto.InterfaceTCP,
		OSUser:          os.Getenv("USER"),
		ClientHostname:  c.hostname,
		ClientName:      c.clientName(),
		Major:           1,
		Minor:           0,
		ProtocolVersion: Revision,
	}.EncodeAware(&c.buf, Revision)
	c.buf.PutString("") // no settings (binary before 54429; use Exec("SET ..."))
	c.buf.PutUVarInt(uint64(proto.StageComplete))
	if c.cw != nil {
		c.buf.PutUVarInt(uint64(proto.CompressionEnabled))
	} else {
		c.buf.PutUVarInt(uint64(proto.CompressionDisabled))
	}
	c.buf.PutString(query)
	// No external tables: an empty data block.
	proto.ClientCodeData.Encode(&c.buf)
	proto.ClientData{}.EncodeAware(&c.buf, Revision)
	if c.cw == nil {
		proto.Block{}.EncodeAware(&c.buf, Revision)
	} else {
		var blk proto.Buffer
		proto.Block{}.EncodeAware(&blk, Revision)
		if err := c.cw.Compress(blk.Buf); err != nil {
			return err
		}
		c.buf.PutRaw(c.cw.Data)
	}
	return c.flush()
}

func (c *Conn) flush() error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.opts.ReadTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(c.buf.Buf)
	return err
}

// packet reads the next packet's code, with the read timeout set for the packet.
func (c *Conn) packet() (uint64, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(c.opts.ReadTimeout)); err != nil {
		return 0, err
	}
	return c.r.UVarInt()
}

// block decodes a data packet into results and returns its row count.
func (c *Conn) block(results proto.Results) (int, error) {
	if _, err := c.r.Str(); err != nil { // temporary table name
		return 0, err
	}
	if c.cw != nil {
		c.r.EnableCompression()
		defer c.r.DisableCompression()
	}
	var blk proto.Block
	var target proto.Result
	if results != nil {
		target = results
	}
	if err := blk.DecodeBlock(c.r, Revision, target); err != nil {
		return 0, err
	}
	return blk.Rows, nil
}

// exception reads the server's exception (and its nested causes).
func (c *Conn) exception() error {
	var first, last *Exception
	for {
		e := &Exception{}
		code, err := c.r.Int32()
		if err != nil {
			return fmt.Errorf("chnative: exception: %w", err)
		}
		e.Code = code
		if e.Name, err = c.r.Str(); err != nil {
			return fmt.Errorf("chnative: exception: %w", err)
		}
		if e.Message, err = c.r.Str(); err != nil {
			return fmt.Errorf("chnative: exception: %w", err)
		}
		if _, err = c.r.Str(); err != nil { // stack trace
			return fmt.Errorf("chnative: exception: %w", err)
		}
		nested, err := c.r.Bool()
		if err != nil {
			return fmt.Errorf("chnative: exception: %w", err)
		}
		if first == nil {
			first = e
		} else {
			last.Next = e
		}
		last = e
		if !nested {
			return first
		}
	}
}
