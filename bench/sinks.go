package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sluicehq/sluice/host/objstore"
)

// Sink is a destination both paths write into.
type Sink struct {
	Name  string // s3 | local | discard
	Desc  string // what it is, for the report
	Store objstore.Store
	close func()
}

// Close releases the sink (stops an in-process S3 server, removes a temporary directory).
func (s *Sink) Close() {
	if s.close != nil {
		s.close()
	}
}

// SinkNames lists the sinks in report order.
var SinkNames = []string{"s3", "local", "discard"}

// OpenSink opens a sink by name. "s3" is the versitygw at $SLUICE_TEST_S3_ENDPOINT when set
// (it must be a loopback address), else an in-process gofakes3 (s3mem) on 127.0.0.1;
// "local" a temporary directory under dir ("" for the system default); "discard" counts
// bytes and keeps none.
func OpenSink(ctx context.Context, name, dir string) (*Sink, error) {
	switch name {
	case "discard":
		return &Sink{Name: name, Desc: "io.Discard-like upload (counts bytes)", Store: Discard{}}, nil
	case "local":
		d, err := os.MkdirTemp(dir, "sluice-bench-")
		if err != nil {
			return nil, err
		}
		st, err := objstore.NewLocalDir(d, "")
		if err != nil {
			os.RemoveAll(d)
			return nil, err
		}
		return &Sink{Name: name, Desc: "objstore.NewLocalDir " + d, Store: st, close: func() { os.RemoveAll(d) }}, nil
	case "s3":
		return openS3(ctx)
	}
	return nil, fmt.Errorf("bench: unknown sink %q (want s3, local or discard)", name)
}

func openS3(ctx context.Context) (*Sink, error) {
	endpoint, access, secret := os.Getenv("SLUICE_TEST_S3_ENDPOINT"), os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY")
	desc := "versitygw at " + endpoint
	var stop func()
	if endpoint == "" {
		backend := s3mem.New()
		if err := backend.CreateBucket(benchBucket); err != nil {
			return nil, err
		}
		srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
		endpoint, access, secret, stop = srv.URL, "fake", "fake", srv.Close
		desc = "in-process gofakes3 (s3mem) at " + endpoint
	} else {
		if err := loopbackOnly(endpoint); err != nil {
			return nil, err
		}
		admin := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
			Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
		_, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(benchBucket)})
		var owned *types.BucketAlreadyOwnedByYou
		var exists *types.BucketAlreadyExists
		if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
			return nil, fmt.Errorf("bench: create bucket %s on %s: %w", benchBucket, endpoint, err)
		}
		stop = func() { // remove what the benchmarks wrote; keep the bucket
			for _, f := range Formats {
				_, _ = admin.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(benchBucket), Key: aws.String(f.Key())})
			}
		}
	}
	st, err := objstore.NewS3(ctx, objstore.S3Config{Bucket: benchBucket, Region: "us-east-1", EndpointURL: endpoint,
		AccessKeyID: access, SecretAccessKey: secret})
	if err != nil {
		if stop != nil {
			stop()
		}
		return nil, err
	}
	return &Sink{Name: "s3", Desc: desc + " (objstore.NewS3, 50 MiB parts, 5 in flight)", Store: st, close: stop}, nil
}

// loopbackOnly refuses an endpoint that is not on a loopback address: benchmarks never
// leave the machine.
func loopbackOnly(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("bench: S3 endpoint %q is not a loopback address; refusing", endpoint)
}
