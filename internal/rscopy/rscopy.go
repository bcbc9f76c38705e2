// Package rscopy is a test double for one Redshift statement on a real PostgreSQL: a
// loopback proxy that speaks the PostgreSQL wire protocol on both sides (pgproto3), forwards
// every message unchanged, except a statement of the form Redshift's
//
//	COPY t (cols) FROM 's3://bucket/manifest' (ACCESS_KEY_ID 'k' SECRET_ACCESS_KEY 's' | IAM_ROLE 'arn') MANIFEST FORMAT AS JSON 'auto' GZIP ...
//
// which PostgreSQL rejects. That one it performs as Redshift would: it reads the manifest and
// its files from an S3-compatible store with the statement's credentials (an IAM role is
// mapped to keys by Roles), and replaces the statement by an INSERT of the files' JSON
// objects (json_populate_recordset) into the same table, in the client's session and
// transaction. A failed read becomes the statement's error, like Redshift's
// S3ServiceException. Every COPY is recorded as received (Statements).
//
// What it proves: the statements the plugin sends through the sql capability (after the
// host's secret substitution), the files in the store, and that the rows land once in a
// real transaction. What it does not: Redshift's own parser, its JSON 'auto' and SUPER
// semantics. Tests only.
package rscopy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Proxy is a running proxy.
type Proxy struct {
	ln       net.Listener
	upstream string
	endpoint string               // S3 endpoint the files are read from
	Roles    map[string][2]string // IAM role ARN -> access key id, secret

	mu         sync.Mutex
	statements []string
	wg         sync.WaitGroup
}

// Listen starts a proxy on 127.0.0.1 to the PostgreSQL server upstream (host:port), reading
// S3 from endpoint.
func Listen(upstream, endpoint string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, endpoint: endpoint, Roles: map[string][2]string{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Statements are the COPY statements received, in order, as the client sent them.
func (p *Proxy) Statements() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.statements...)
}

// Close stops accepting; open connections end with their clients.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	be := pgproto3.NewBackend(client, client)
	fe := pgproto3.NewFrontend(server, server)
	for {
		m, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		if _, ok := m.(*pgproto3.SSLRequest); ok {
			if _, err := client.Write([]byte("N")); err != nil {
				return
			}
			continue
		}
		if _, ok := m.(*pgproto3.GSSEncRequest); ok {
			if _, err := client.Write([]byte("N")); err != nil {
				return
			}
			continue
		}
		fe.Send(m)
		if err := fe.Flush(); err != nil {
			return
		}
		break
	}
	// The server's side goes back as it is; the client's is read message by message.
	go func() { _, _ = io.Copy(client, bufio.NewReader(server)); client.Close() }()
	for {
		m, err := be.Receive()
		if err != nil {
			return
		}
		switch x := m.(type) {
		case *pgproto3.Parse:
			x.Query = p.rewrite(x.Query)
		case *pgproto3.Query:
			x.String = p.rewrite(x.String)
		}
		fe.Send(m)
		if err := fe.Flush(); err != nil {
			return
		}
	}
}

var (
	copyRE   = regexp.MustCompile(`(?is)^\s*COPY\s+("?[A-Za-z0-9_]+"?)\s*\(([^)]*)\)\s+FROM\s+'s3://([^/']+)/([^']+)'(.*?);?\s*$`)
	keyRE    = regexp.MustCompile(`(?i)\bACCESS_KEY_ID\s+'([^']*)'`)
	secretRE = regexp.MustCompile(`(?i)\bSECRET_ACCESS_KEY\s+'([^']*)'`)
	roleRE   = regexp.MustCompile(`(?i)\bIAM_ROLE\s+'([^']*)'`)
)

// rewrite performs a Redshift COPY: the replacement statement, or the original one.
func (p *Proxy) rewrite(sql string) string {
	m := copyRE.FindStringSubmatch(sql)
	if m == nil {
		return sql
	}
	p.mu.Lock()
	p.statements = append(p.statements, sql)
	p.mu.Unlock()
	table, cols, bucket, key, opts := m[1], m[2], m[3], m[4], m[5]
	rows, err := p.load(bucket, key, opts)
	if err != nil {
		return raise("S3ServiceException:" + err.Error())
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return raise(err.Error())
	}
	tag := "$rscopy$"
	if bytes.Contains(doc, []byte(tag)) {
		return raise("the data holds the quote tag")
	}
	return "INSERT INTO " + table + " (" + cols + ") SELECT " + cols + " FROM json_populate_recordset(NULL::" + table +
		", " + tag + string(doc) + tag + "::json)"
}

// raise is a statement failing with msg (SQLSTATE XX000, as Redshift's load errors).
func raise(msg string) string {
	msg = strings.ReplaceAll(msg, "'", "''")
	return "DO $rscopy$ BEGIN RAISE EXCEPTION USING MESSAGE = '" + strings.ReplaceAll(msg, "$", "") + "', ERRCODE = 'XX000'; END $rscopy$"
}

// load reads the manifest and its files with the statement's credentials.
func (p *Proxy) load(bucket, key, opts string) ([]json.RawMessage, error) {
	upper := strings.ToUpper(opts)
	if !strings.Contains(upper, "MANIFEST") || !strings.Contains(upper, "JSON") {
		return nil, errors.New("rscopy handles COPY ... MANIFEST FORMAT AS JSON only")
	}
	var id, secret string
	if r := roleRE.FindStringSubmatch(opts); r != nil {
		keys, ok := p.Roles[r[1]]
		if !ok {
			return nil, fmt.Errorf("Access Denied: not authorized to assume IAM role %s", r[1])
		}
		id, secret = keys[0], keys[1]
	} else {
		k, s := keyRE.FindStringSubmatch(opts), secretRE.FindStringSubmatch(opts)
		if k == nil || s == nil {
			return nil, errors.New("no credentials: IAM_ROLE or ACCESS_KEY_ID and SECRET_ACCESS_KEY")
		}
		id, secret = k[1], s[1]
	}
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")})
	get := func(bucket, key string) ([]byte, error) {
		out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
	raw, err := get(bucket, key)
	if err != nil {
		return nil, err
	}
	var manifest struct {
		Entries []struct {
			URL       string `json:"url"`
			Mandatory bool   `json:"mandatory"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", key, err)
	}
	rows := []json.RawMessage{}
	for _, e := range manifest.Entries {
		b, k, ok := strings.Cut(strings.TrimPrefix(e.URL, "s3://"), "/")
		if !ok || !strings.HasPrefix(e.URL, "s3://") {
			return nil, fmt.Errorf("manifest entry %q is not an s3:// URL", e.URL)
		}
		data, err := get(b, k)
		if err != nil {
			return nil, err
		}
		if strings.Contains(upper, "GZIP") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, err
			}
			if data, err = io.ReadAll(zr); err != nil {
				return nil, err
			}
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				rows = append(rows, json.RawMessage(line))
			}
		}
	}
	return rows, nil
}
