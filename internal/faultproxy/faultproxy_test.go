package faultproxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/internal/faultproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func TestTCPForwardDropRefuse(t *testing.T) {
	p, err := faultproxy.ListenTCP(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	if n := p.Drop(); n != 1 {
		t.Fatalf("Drop closed %d connections, want 1", n)
	}
	if _, err := roundTrip(c, "again"); err == nil {
		t.Fatal("a dropped connection still answers")
	}
	p.Refuse(500 * time.Millisecond)
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		if _, err := roundTrip(c2, "refused?"); err == nil {
			t.Fatal("a connection was served while refusing")
		}
		c2.Close()
	}
	time.Sleep(600 * time.Millisecond)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "back"); err != nil || got != "back" {
		t.Fatalf("after the refusal: %q, %v", got, err)
	}
	if s := p.Stats(); s.Dropped != 1 || s.Refused < 1 || s.Accepted < 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTCPLatencyAndReset(t *testing.T) {
	p, err := faultproxy.ListenTCP(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetLatency(100 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := roundTrip(c, "slow"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("round trip took %s with 100 ms each way", d)
	}
	c.Close()
	p.SetLatency(0)
	p.SetResetFraction(1)
	c, err = net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Repeat("x", 70<<10) // more than the largest reset point
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, big+"\n") }()
	n, err := io.Copy(io.Discard, c)
	if err == nil && n > int64(len(big)) || n > 64<<10 {
		t.Fatalf("read %d bytes, err %v: the connection was not reset", n, err)
	}
	if s := p.Stats(); s.Reset != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHTTPFaults(t *testing.T) {
	var seen atomic.Int64
	var host atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		host.Store(r.Host)
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	for _, tc := range []struct {
		name       string
		f          faultproxy.HTTPFaults
		wantStatus int // 0: the request fails without an answer
		wantSeen   int64
	}{
		{"pass", faultproxy.HTTPFaults{}, 200, 1},
		{"error before", faultproxy.HTTPFaults{ErrorRate: 1}, -1, 0},
		{"error after", faultproxy.HTTPFaults{ErrorRate: 1, AfterFraction: 1}, -1, 1},
		{"reset", faultproxy.HTTPFaults{ResetRate: 1}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.Store(0)
			p, err := faultproxy.ListenHTTP(up.URL, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			resp, err := http.Post(p.URL()+"/bucket/key", "text/plain", strings.NewReader("body"))
			switch {
			case tc.wantStatus == 0:
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got HTTP %d, want a reset", resp.StatusCode)
				}
			case err != nil:
				t.Fatal(err)
			default:
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if tc.wantStatus > 0 && resp.StatusCode != tc.wantStatus {
					t.Fatalf("HTTP %d", resp.StatusCode)
				}
				if tc.wantStatus < 0 && (resp.StatusCode < 500 || !strings.Contains(string(body), "<Code>")) {
					t.Fatalf("HTTP %d %s, want an S3 error", resp.StatusCode, body)
				}
			}
			if seen.Load() != tc.wantSeen {
				t.Fatalf("upstream saw %d requests, want %d", seen.Load(), tc.wantSeen)
			}
			if tc.wantSeen > 0 && host.Load() != strings.TrimPrefix(p.URL(), "http://") {
				t.Fatalf("upstream saw Host %v, want the proxy's", host.Load())
			}
		})
	}
}

// TestHTTPSigV4ThroughProxy: versitygw checks SigV4 signatures, which cover the Host
// header: with the proxy passing it through, a client pointed at the proxy works, and
// with S3 errors injected on 30% of the requests the SDK's retries still succeed.
func TestHTTPSigV4ThroughProxy(t *testing.T) {
	endpoint := os.Getenv("SLUICE_TEST_S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("SLUICE_TEST_S3_ENDPOINT is not set")
	}
	p, err := faultproxy.ListenHTTP(endpoint, faultproxy.HTTPFaults{ErrorRate: 0.3, Latency: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL()), UsePathStyle: true,
		RetryMaxAttempts: 20,
		Credentials:      credentials.NewStaticCredentialsProvider(os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), os.Getenv("SLUICE_TEST_S3_SECRET_KEY"), "")})
	ctx := context.Background()
	bucket := "chaos-faultproxy-" + strings.ToLower(time.Now().UTC().Format("20060102t150405.000000000"))
	bucket = strings.ReplaceAll(bucket, ".", "-")
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}) }()
	for i := 0; i < 5; i++ {
		key := "k"
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("v")}); err != nil {
			var ae interface{ ErrorCode() string }
			if errors.As(err, &ae) {
				t.Fatalf("put %d: %s (%v)", i, ae.ErrorCode(), err)
			}
			t.Fatal(err)
		}
	}
	key := "k"
	_, _ = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	s := p.Stats()
	if s.Errors == 0 || s.Forwarded < 5 {
		t.Fatalf("stats %+v: no fault injected or too few requests through", s)
	}
	t.Logf("proxy stats: %+v", s)
}

// TestTCPCutAfter: a client chunk holding the match reaches the server, and the client
// never gets the answer (its connection is reset); the next one passes again.
func TestTCPCutAfter(t *testing.T) {
	p, err := faultproxy.ListenTCP(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.CutAfter([]byte("COMMIT"), 1, 50*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(c, "begin"); err != nil || got != "begin" {
		t.Fatalf("%q %v", got, err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := roundTrip(c, "COMMIT"); err == nil {
		t.Fatalf("the answer %q came back through a cut connection", got)
	}
	c.Close()
	if s := p.Stats(); s.Reset != 1 {
		t.Fatalf("stats %+v", s)
	}
	c, err = net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "COMMIT"); err != nil || got != "COMMIT" {
		t.Fatalf("the second COMMIT: %q %v", got, err)
	}
}
