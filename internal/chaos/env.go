// Package chaos is Sluice's chaos driver: several real `sluice serve` processes on one
// PostgreSQL, one ClickHouse source fed by their capture endpoints, exports to versitygw,
// a killer that SIGKILLs random hosts and restarts them, fault proxies between the hosts
// and their dependencies, and a verifier that reads every object back. The tests of this
// package run it: a short version in `go test` (CI) and the full one with `make chaos`;
// `make soak` runs the soak. See docs/reliability.md.
package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Services are the shared loopback servers (from .ci/services.sh).
type Services struct {
	PostgresURL   string // an existing database on the server; the env creates its own
	ClickHouseDSN string // clickhouse://127.0.0.1:9000/default
	S3Endpoint    string
	S3Access      string
	S3Secret      string
}

// ServicesFromEnv reads the SLUICE_TEST_* variables; missing names which are absent.
func ServicesFromEnv() (Services, []string) {
	s := Services{
		PostgresURL:   os.Getenv("SLUICE_TEST_POSTGRES_URL"),
		ClickHouseDSN: os.Getenv("SLUICE_TEST_CLICKHOUSE_DSN"),
		S3Endpoint:    os.Getenv("SLUICE_TEST_S3_ENDPOINT"),
		S3Access:      os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"),
		S3Secret:      os.Getenv("SLUICE_TEST_S3_SECRET_KEY"),
	}
	var missing []string
	for n, v := range map[string]string{"SLUICE_TEST_POSTGRES_URL": s.PostgresURL,
		"SLUICE_TEST_CLICKHOUSE_DSN": s.ClickHouseDSN, "SLUICE_TEST_S3_ENDPOINT": s.S3Endpoint} {
		if v == "" {
			missing = append(missing, n)
		}
	}
	return s, missing
}

// Env is one scenario's own PostgreSQL database, ClickHouse database (with PostHog's
// events table) and S3 bucket.
type Env struct {
	Svc       Services
	Name      string // chaos_<label>_<time>, used for all three
	PGURL     string // the scenario's database
	CHDSN     string // the scenario's ClickHouse database
	Bucket    string
	SecretKey string // shared by every host (64 hex digits)
	S3        *s3.Client
	CH        driver.Conn
	Keep      bool // SLUICE_CHAOS_KEEP=1: leave everything for inspection
}

// eventsDDL is PostHog's events table in 18.16's types, on a plain MergeTree: a
// ReplacingMergeTree would merge a re-sent event's copies away at any time, and the
// verifier needs the source's rows to stay what the runs read (docs/reliability.md).
const eventsDDL = `CREATE TABLE %s.events (
	uuid UUID,
	event String,
	properties String,
	timestamp DateTime('UTC'),
	team_id Int64,
	distinct_id String,
	elements_chain String,
	created_at DateTime('UTC'),
	person_id UUID,
	person_properties String,
	inserted_at Nullable(DateTime('UTC')),
	_timestamp DateTime,
	_offset UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))`

// NewEnv creates the scenario's database, ClickHouse database and bucket.
func NewEnv(ctx context.Context, svc Services, label string) (*Env, error) {
	e := &Env{Svc: svc, Name: fmt.Sprintf("chaos_%s_%d", label, time.Now().UnixNano()), Keep: os.Getenv("SLUICE_CHAOS_KEEP") != ""}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	e.SecretKey = hex.EncodeToString(key[:])
	admin, err := sql.Open("pgx", svc.PostgresURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+e.Name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(svc.PostgresURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + e.Name
	e.PGURL = u.String()

	opts, err := clickhouse.ParseDSN(svc.ClickHouseDSN)
	if err != nil {
		return nil, err
	}
	if e.CH, err = clickhouse.Open(opts); err != nil {
		return nil, err
	}
	if err := e.CH.Exec(ctx, "CREATE DATABASE "+e.Name); err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if err := e.CH.Exec(ctx, fmt.Sprintf(eventsDDL, e.Name)); err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	cu, err := url.Parse(svc.ClickHouseDSN)
	if err != nil {
		return nil, err
	}
	cu.Path = "/" + e.Name
	e.CHDSN = cu.String()

	e.S3 = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(svc.S3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(svc.S3Access, svc.S3Secret, "")})
	e.Bucket = strings.ReplaceAll(e.Name, "_", "-")
	if _, err := e.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &e.Bucket}); err != nil {
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	return e, nil
}

func replaceHost(raw, addr string) string {
	u, _ := url.Parse(raw)
	u.Host = addr
	return u.String()
}

func hostOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

// Close drops the database, the ClickHouse database and the bucket's objects and bucket
// (unless Keep), and returns what it could not drop.
func (e *Env) Close(ctx context.Context) error {
	if e.Keep {
		return nil
	}
	var errs []error
	// Each step has its own deadline: dropping a big ClickHouse database can take a minute
	// on a loaded machine, and must not leave the PostgreSQL database behind.
	step := func(f func(context.Context) error) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		errs = append(errs, f(sctx))
	}
	step(func(ctx context.Context) error {
		admin, err := sql.Open("pgx", e.Svc.PostgresURL)
		if err != nil {
			return err
		}
		defer admin.Close()
		_, err = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+e.Name+" WITH (FORCE)")
		return err
	})
	if e.CH != nil {
		step(func(ctx context.Context) error { return e.CH.Exec(ctx, "DROP DATABASE IF EXISTS "+e.Name) })
		e.CH.Close()
	}
	if e.S3 != nil {
		var token *string
		for {
			out, err := e.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &e.Bucket, ContinuationToken: token})
			if err != nil {
				break
			}
			for _, o := range out.Contents {
				_, _ = e.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &e.Bucket, Key: o.Key})
			}
			if out.NextContinuationToken == nil {
				break
			}
			token = out.NextContinuationToken
		}
		_, err := e.S3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &e.Bucket})
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop %s: %w", e.Name, err)
	}
	return nil
}
