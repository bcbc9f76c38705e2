package httpcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/runtime"
)

const testSecret = "s3cr3t-token-value"

func bind(t *testing.T, cfg Config, base string) *Binding {
	t.Helper()
	b, err := Bind(cfg, map[string]string{"base_url": base, "secret_token": testSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func do(t *testing.T, b *Binding, req abi.HTTPRequest, body runtime.Upload) (abi.HTTPResponse, error) {
	t.Helper()
	req.Op = "request"
	raw, _ := json.Marshal(req)
	var resp abi.HTTPResponse
	doc, err := b.Request(context.Background(), raw, body)
	if err != nil {
		if strings.Contains(err.Error(), testSecret) {
			t.Errorf("error message holds the secret: %v", err)
		}
		return resp, err
	}
	if strings.Contains(string(doc), testSecret) {
		t.Errorf("response document holds the secret: %s", doc)
	}
	if err := json.Unmarshal(doc, &resp); err != nil {
		t.Fatal(err)
	}
	return resp, nil
}

func status(err error) abi.Status {
	var ce *runtime.CapabilityError
	if errors.As(err, &ce) {
		return ce.Status
	}
	return abi.StatusOK
}

var allow = Config{AllowPrivate: true}

func TestOriginIsBound(t *testing.T) {
	var hitsOther atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsOther.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/stolen", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/landed?x=1", http.StatusTemporaryRedirect)
		default:
			fmt.Fprintf(w, "path=%s query=%s", r.URL.Path, r.URL.RawQuery)
		}
	}))
	defer srv.Close()
	b := bind(t, allow, srv.URL+"/api/")
	cases := []struct {
		name, url string
		want      abi.Status
		body      string
	}{
		{"relative path", "batch?a=1", abi.StatusOK, "path=/api/batch query=a=1"},
		{"absolute path on the origin", "/other", abi.StatusOK, "path=/other query="},
		{"absolute URL on the origin", srv.URL + "/x", abi.StatusOK, "path=/x query="},
		{"empty: the base URL", "", abi.StatusOK, "path=/api/ query="},
		{"another origin", other.URL + "/x", abi.StatusDenied, ""},
		{"another scheme", strings.Replace(srv.URL, "http://", "https://", 1) + "/x", abi.StatusDenied, ""},
		{"scheme-relative to another host", "//example.com/x", abi.StatusDenied, ""},
		{"user info", "http://u:p@" + strings.TrimPrefix(srv.URL, "http://") + "/x", abi.StatusBadArgument, ""},
		{"same-origin redirect is followed", "/here", abi.StatusOK, "path=/landed query=x=1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := do(t, b, abi.HTTPRequest{URL: c.url}, nil)
			if status(err) != c.want || (err == nil) != (c.want == abi.StatusOK) {
				t.Fatalf("status %v err %v, want %v", status(err), err, c.want)
			}
			if c.want == abi.StatusOK && resp.Body != c.body {
				t.Errorf("body %q, want %q", resp.Body, c.body)
			}
		})
	}
	t.Run("redirect to another origin is not followed", func(t *testing.T) {
		resp, err := do(t, b, abi.HTTPRequest{URL: "/away", ResponseHeaders: []string{"location"}}, nil)
		if err != nil || resp.Status != http.StatusFound || resp.Headers["Location"] != other.URL+"/stolen" {
			t.Fatalf("resp %+v err %v", resp, err)
		}
	})
	if n := hitsOther.Load(); n != 0 {
		t.Errorf("the unbound origin received %d requests", n)
	}
}

func TestPrivateAddressesRefusedByDefault(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, base := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port} {
		t.Run(base, func(t *testing.T) {
			b := bind(t, Config{}, base)
			_, err := do(t, b, abi.HTTPRequest{URL: "/"}, nil)
			if status(err) != abi.StatusDenied || !strings.Contains(err.Error(), "SLUICE_HTTP_ALLOW_PRIVATE") {
				t.Fatalf("err %v (status %v), want denied naming SLUICE_HTTP_ALLOW_PRIVATE", err, status(err))
			}
		})
	}
	if hits.Load() != 0 {
		t.Errorf("the loopback server received %d requests", hits.Load())
	}
	b := bind(t, allow, srv.URL)
	if _, err := do(t, b, abi.HTTPRequest{URL: "/"}, nil); err != nil || hits.Load() != 1 {
		t.Fatalf("with AllowPrivate: err %v, hits %d", err, hits.Load())
	}
}

func TestBlocked(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.169.254": true,
		"100.64.0.1": true, "0.0.0.0": true, "::1": true, "fe80::1": true, "fc00::1": true, "::ffff:10.0.0.1": true,
		"::": true, "8.8.8.8": false, "2001:4860:4860::8888": false, "1.1.1.1": false,
	} {
		if got := Blocked(netip.MustParseAddr(addr)) != ""; got != want {
			t.Errorf("Blocked(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestFaults(t *testing.T) {
	var n429 atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/429-then-ok":
			if n429.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			io.WriteString(w, "ok")
		case "/429-long":
			w.Header().Set("Retry-After", "120")
			http.Error(w, "come back later", http.StatusTooManyRequests)
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		case "/big":
			w.Write([]byte(strings.Repeat("x", 2<<20)))
		}
	}))
	defer srv.Close()
	b := bind(t, allow, srv.URL)

	resp, err := do(t, b, abi.HTTPRequest{URL: "/500"}, nil)
	if err != nil || resp.Status != 500 || !strings.Contains(resp.Body, "boom") {
		t.Errorf("500: %+v %v", resp, err)
	}
	t0 := time.Now()
	resp, err = do(t, b, abi.HTTPRequest{URL: "/429-then-ok", WaitRetryAfterMS: 2000}, nil)
	if err != nil || resp.Status != 200 || resp.Attempts != 2 || time.Since(t0) < time.Second {
		t.Errorf("429 then ok: %+v %v after %s", resp, err, time.Since(t0))
	}
	resp, err = do(t, b, abi.HTTPRequest{URL: "/429-long", WaitRetryAfterMS: 2000, ResponseHeaders: []string{"Retry-After"}}, nil)
	if err != nil || resp.Status != 429 || resp.Attempts != 1 || resp.Headers["Retry-After"] != "120" {
		t.Errorf("429 too long to wait: %+v %v", resp, err)
	}
	t0 = time.Now()
	_, err = do(t, b, abi.HTTPRequest{URL: "/slow", TimeoutMS: 200}, nil)
	if status(err) != abi.StatusRetryableIO || !strings.Contains(err.Error(), "timed out") || time.Since(t0) > 3*time.Second {
		t.Errorf("slow: %v (status %v) after %s", err, status(err), time.Since(t0))
	}
	resp, err = do(t, b, abi.HTTPRequest{URL: "/big", MaxResponseBytes: 1000}, nil)
	if err != nil || len(resp.Body) != 1000 || !resp.BodyTruncated {
		t.Errorf("big: %d bytes truncated=%v %v", len(resp.Body), resp.BodyTruncated, err)
	}
	resp, err = do(t, b, abi.HTTPRequest{URL: "/big", MaxResponseBytes: 1 << 30}, nil)
	if err != nil || int64(len(resp.Body)) != DefaultMaxResponseBytes || !resp.BodyTruncated {
		t.Errorf("big past the host cap: %d bytes truncated=%v %v", len(resp.Body), resp.BodyTruncated, err)
	}
	srv.Close()
	_, err = do(t, b, abi.HTTPRequest{URL: "/500"}, nil)
	if status(err) != abi.StatusRetryableIO {
		t.Errorf("closed server: %v (status %v), want retryable_io", err, status(err))
	}
}

func TestSecrets(t *testing.T) {
	var gotBody atomic.Value
	gotBody.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/form" {
			raw, _ := io.ReadAll(r.Body)
			gotBody.Store(string(raw))
		}
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+testSecret {
			http.Error(w, "invalid token "+r.Header.Get("Authorization"), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s", r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	b := bind(t, allow, srv.URL)
	resp, err := do(t, b, abi.HTTPRequest{URL: "/", Headers: map[string]string{"Authorization": "Bearer {secret:token}"},
		ResponseHeaders: []string{"X-Echo"}}, nil)
	if err != nil || resp.Status != 200 || resp.Body != "hello Bearer "+redactedSecret || resp.Headers["X-Echo"] != "Bearer "+redactedSecret {
		t.Fatalf("echoed secret not redacted, or not sent: %+v %v", resp, err)
	}
	// A string body: {secret:NAME} expanded as in headers (a form-encoded client secret).
	resp, err = do(t, b, abi.HTTPRequest{URL: "/form", Method: "POST", Headers: map[string]string{"Authorization": "Bearer {secret:token}"},
		Body: "grant_type=client_credentials&client_secret={secret:token}"}, nil)
	if err != nil || resp.Status != 200 || gotBody.Load() != "grant_type=client_credentials&client_secret="+testSecret {
		t.Fatalf("secret in a string body not expanded: %+v %v, server read %q", resp, err, gotBody.Load())
	}
	if _, err := do(t, b, abi.HTTPRequest{URL: "/", Body: "x={secret:other}"}, nil); status(err) != abi.StatusBadArgument {
		t.Fatalf("unknown secret in a body: %v", err)
	}
	_, err = do(t, b, abi.HTTPRequest{URL: "/", Headers: map[string]string{"Authorization": "Bearer {secret:other}"}}, nil)
	var ce *runtime.CapabilityError
	if !errors.As(err, &ce) || ce.Status != abi.StatusBadArgument || ce.Code != "unknown_secret" || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("unknown secret: %v", err)
	}
	for _, h := range []string{"Host", "content-length", "Bad Name"} {
		if _, err := do(t, b, abi.HTTPRequest{URL: "/", Headers: map[string]string{h: "x"}}, nil); status(err) != abi.StatusBadArgument {
			t.Errorf("header %q: %v", h, err)
		}
	}
}

func TestBodiesAndCaps(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + r.Header.Get("Content-Type") + " " + string(b))
	}))
	defer srv.Close()
	b := bind(t, Config{AllowPrivate: true, MaxRequestsPerRun: 3, MaxBodyBytes: 10}, srv.URL)
	u, err := b.Sink().Create(context.Background(), "body", runtime.ObjectOptions{ContentType: "application/jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("x")); status(err) != abi.StatusLimitExceeded {
		t.Errorf("body past the cap: %v", err)
	}
	for range 2 { // a body may be sent again (after a 429)
		if _, err := do(t, b, abi.HTTPRequest{Method: "PUT", URL: "/", BodyUpload: 1}, u); err != nil {
			t.Fatal(err)
		}
		if g := got.Load(); g != "PUT application/jsonl 0123456789" {
			t.Errorf("server got %q", g)
		}
	}
	if _, err := do(t, b, abi.HTTPRequest{URL: "/", Body: "raw"}, nil); err != nil || got.Load() != "POST  raw" {
		t.Errorf("raw body: %v %q", err, got.Load())
	}
	if _, err := do(t, b, abi.HTTPRequest{URL: "/"}, nil); status(err) != abi.StatusLimitExceeded {
		t.Errorf("4th request of a run capped at 3: %v", err)
	}
	_ = u.Abort(context.Background())
	if b.bodyBytes != 0 {
		t.Errorf("released body still counted: %d bytes", b.bodyBytes)
	}
}

func TestBindErrors(t *testing.T) {
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{}, "binds no URL"},
		{map[string]string{"base_url": "ftp://x/"}, "http or https"},
		{map[string]string{"base_url": "http://u:p@x/"}, "user information"},
		{map[string]string{"base_url": "http://x/", "secret_Bad": "v"}, "secret name"},
		{map[string]string{"base_url": "http://x/", "headers": "v"}, "unknown http binding"},
		{map[string]string{"base_url": "u:p@x.example"}, "user information"}, // bare host: https://u:p@x.example
	} {
		_, err := Bind(Config{}, c.params)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "u:p") {
			t.Errorf("%v: %v, want %q", c.params, err, c.want)
		}
	}
}

// A base URL without a scheme is a bare host name: HTTPS on its default port.
func TestBindBareHost(t *testing.T) {
	for raw, want := range map[string]string{"dbc-1.cloud.databricks.com": "https://dbc-1.cloud.databricks.com",
		"dbc-1.cloud.databricks.com:8443": "https://dbc-1.cloud.databricks.com:8443", "http://127.0.0.1:9": "http://127.0.0.1:9"} {
		b, err := Bind(Config{}, map[string]string{"base_url": raw})
		if err != nil || b.Origin() != want {
			t.Errorf("%q: origin %v, %v; want %s", raw, b, err, want)
			continue
		}
		_ = b.Close()
	}
}
