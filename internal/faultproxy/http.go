package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPFaults sets what an HTTP proxy injects. Fractions are of all requests.
type HTTPFaults struct {
	// ErrorRate answers this fraction of requests with an S3 error (500 InternalError,
	// 503 ServiceUnavailable or 503 SlowDown, in S3's XML shape).
	ErrorRate float64
	// AfterFraction of the injected errors are sent after the request reached the server
	// and was carried out (its answer is replaced): the client cannot tell it happened.
	AfterFraction float64
	// ResetRate closes this fraction of requests' connections without any answer (before
	// the request reaches the server).
	ResetRate float64
	// Latency delays each request by a uniform random time in [0, Latency).
	Latency time.Duration
}

// HTTPStats counts what an HTTP proxy did.
type HTTPStats struct {
	Requests     int64 // requests received
	Errors       int64 // answered with an injected error before forwarding
	ErrorsAfter  int64 // forwarded, carried out, then answered with an injected error
	Resets       int64 // connections closed without an answer
	Forwarded    int64 // requests that reached the server
	ByCode       map[string]int64
	DelayedTotal time.Duration
}

// HTTP is a reverse proxy in front of an S3 server that injects faults. The Host header
// the client signed (SigV4) is passed through unchanged.
type HTTP struct {
	target *url.URL
	srv    *http.Server
	ln     net.Listener
	rp     *httputil.ReverseProxy

	mu     sync.Mutex
	faults HTTPFaults
	rnd    *rand.Rand
	byCode map[string]int64
	delay  time.Duration

	requests, errs, errsAfter, resets, forwarded atomic.Int64
}

var s3Errors = []struct {
	status int
	code   string
	msg    string
}{
	{http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again."},
	{http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unable to handle request."},
	{http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."},
}

type ctxKey struct{}

// errInjectedAfter marks a response replaced by an injected error.
var errInjectedAfter = errors.New("faultproxy: injected error after the request was carried out")

// ListenHTTP starts a proxy on 127.0.0.1 (a free port) to target (http://host:port).
func ListenHTTP(target string, f HTTPFaults) (*HTTP, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &HTTP{target: u, ln: ln, faults: f, byCode: map[string]int64{},
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the signature covers the Host the client used
		},
		ModifyResponse: func(resp *http.Response) error {
			if code, _ := resp.Request.Context().Value(ctxKey{}).(string); code != "" {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return errInjectedAfter
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errInjectedAfter) {
				code, _ := r.Context().Value(ctxKey{}).(string)
				p.errsAfter.Add(1)
				p.writeError(w, code)
				return
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's base URL (http://127.0.0.1:PORT), to use as the S3 endpoint.
func (p *HTTP) URL() string { return "http://" + p.ln.Addr().String() }

// Set replaces the faults.
func (p *HTTP) Set(f HTTPFaults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns the counters.
func (p *HTTP) Stats() HTTPStats {
	p.mu.Lock()
	by := make(map[string]int64, len(p.byCode))
	for k, v := range p.byCode {
		by[k] = v
	}
	d := p.delay
	p.mu.Unlock()
	return HTTPStats{Requests: p.requests.Load(), Errors: p.errs.Load(), ErrorsAfter: p.errsAfter.Load(),
		Resets: p.resets.Load(), Forwarded: p.forwarded.Load(), ByCode: by, DelayedTotal: d}
}

// Close stops the proxy.
func (p *HTTP) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}

// decision is what happens to one request.
type decision struct {
	delay time.Duration
	reset bool
	code  string // injected error code, "" for none
	after bool
}

func (p *HTTP) decide() decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	var d decision
	if f.Latency > 0 {
		d.delay = time.Duration(p.rnd.Int64N(int64(f.Latency)))
		p.delay += d.delay
	}
	x := p.rnd.Float64()
	switch {
	case x < f.ResetRate:
		d.reset = true
	case x < f.ResetRate+f.ErrorRate:
		e := s3Errors[p.rnd.IntN(len(s3Errors))]
		d.code = e.code
		d.after = p.rnd.Float64() < f.AfterFraction
		p.byCode[e.code]++
	}
	return d
}

func (p *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	d := p.decide()
	if d.delay > 0 {
		select {
		case <-time.After(d.delay):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case d.reset:
		p.resets.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				_ = c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without an answer
	case d.code != "" && !d.after:
		_, _ = io.Copy(io.Discard, r.Body)
		p.errs.Add(1)
		p.writeError(w, d.code)
		return
	case d.code != "":
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, d.code))
	}
	p.forwarded.Add(1)
	p.rp.ServeHTTP(w, r)
}

func (p *HTTP) writeError(w http.ResponseWriter, code string) {
	for _, e := range s3Errors {
		if e.code == code {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(e.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
				`<Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId></Error>`, e.code, e.msg)
			return
		}
	}
	w.WriteHeader(http.StatusInternalServerError)
}
