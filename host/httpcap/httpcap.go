// Package httpcap is the host side of the `http` capability (plugin ABI 1.1): a plugin sends
// HTTP requests to the one origin its export's config binds (field binding http.base_url),
// with secrets the host puts into headers by name ({secret:NAME}, fields bound as
// http.secret_NAME) and bodies the host builds from batches (http_body uploads written by
// host encoders). The plugin gets back the status, the headers it asks for and a capped
// body, and classifies the answer itself.
//
// Safe by default: requests leave only for the bound origin; redirects to another origin are
// not followed (the 3xx answer is returned); every connection's resolved address is checked
// when it is dialled, so loopback, private, link-local and other non-public addresses are
// refused unless the operator allows them (Config.AllowPrivate, SLUICE_HTTP_ALLOW_PRIVATE);
// request time, response size, body size and requests per run are capped. No proxy from the
// environment is used (it would dial on the plugin's behalf, past the address check).
// See docs/capabilities.md.
package httpcap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/runtime"
)

// Defaults of Config.
const (
	DefaultRequestTimeout       = 30 * time.Second
	DefaultMaxResponseBytes     = 1 << 20
	DefaultResponseBytes        = 64 << 10
	DefaultMaxRequestsPerRun    = 100_000
	DefaultMaxBodyBytes         = 32 << 20
	DefaultDialTimeout          = 10 * time.Second
	maxRedirects                = 5
	redactedSecret              = "[redacted secret]"
	secretParamPrefix           = "secret_"
	bindingBaseURL              = "base_url"
	opRequest                   = "request"
	maxHeaderValueBytes         = 8 << 10
	maxHeaders                  = 64
	minSecretLenToScrubResponse = 4
)

// Config is the operator's policy for every http binding.
type Config struct {
	// AllowPrivate lets requests reach loopback, private (RFC 1918, ULA), link-local,
	// CGNAT and unspecified addresses. Off by default: a plugin must not probe the host's
	// network or a cloud metadata endpoint.
	AllowPrivate bool
	// RequestTimeout caps each request, connection and body included (a request's
	// timeout_ms may only lower it). Default 30 s.
	RequestTimeout time.Duration
	// MaxResponseBytes caps the response body returned to the plugin (its
	// max_response_bytes may only lower it; default 64 KiB per request). Default 1 MiB.
	MaxResponseBytes int64
	// MaxRequestsPerRun caps the requests of one run. Default 100,000.
	MaxRequestsPerRun int
	// MaxBodyBytes caps the bytes held in all of a run's open request bodies. Default 32 MiB.
	MaxBodyBytes int64
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxRequestsPerRun <= 0 {
		c.MaxRequestsPerRun = DefaultMaxRequestsPerRun
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return c
}

// Binding is the http capability bound to one export for one run (or one destination
// test). It is used by one guest call at a time.
type Binding struct {
	cfg       Config
	base      *url.URL
	origin    string
	secrets   map[string]string
	client    *http.Client
	transport *http.Transport
	requests  int
	bodyBytes int64  // held by open bodies
	spare     []byte // a released body's storage, reused by the next body
}

var secretNameRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// Bind builds a binding from the capability's parameters (control.capBinding): base_url,
// required, and secret_NAME for every secret the plugin may name as {secret:NAME}.
func Bind(cfg Config, params map[string]string) (*Binding, error) {
	cfg = cfg.withDefaults()
	raw := strings.TrimSpace(params[bindingBaseURL])
	if raw == "" {
		return nil, errors.New("the destination config binds no URL (http.base_url)")
	}
	if !strings.Contains(raw, "://") {
		// A bare host name (a service's "server hostname" field): HTTPS on its default port.
		raw = "https://" + raw
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("http.base_url: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("http.base_url %q: the scheme must be http or https", redactURL(base))
	}
	if base.Host == "" || base.Hostname() == "" {
		return nil, fmt.Errorf("http.base_url %q has no host", redactURL(base))
	}
	if base.User != nil {
		return nil, fmt.Errorf("http.base_url %q carries user information; bind credentials as a secret field (http.secret_NAME) instead", redactURL(base))
	}
	b := &Binding{cfg: cfg, base: base, origin: originOf(base), secrets: map[string]string{}}
	for k, v := range params {
		name, ok := strings.CutPrefix(k, secretParamPrefix)
		if !ok {
			if k != bindingBaseURL {
				return nil, fmt.Errorf("unknown http binding %q (want http.base_url or http.secret_NAME)", "http."+k)
			}
			continue
		}
		if !secretNameRE.MatchString(name) {
			return nil, fmt.Errorf("http binding %q: the secret name must match [a-z0-9_]{1,64}", "http."+k)
		}
		b.secrets[name] = v
	}
	dialer := &net.Dialer{Timeout: DefaultDialTimeout, Control: b.checkAddress}
	b.transport = &http.Transport{
		Proxy:                 nil, // never the environment's: the proxy would dial past checkAddress
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          8,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   DefaultDialTimeout,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		DisableCompression:    true, // the plugin sees the body the server sent
	}
	b.client = &http.Client{Transport: b.transport, CheckRedirect: b.checkRedirect}
	return b, nil
}

// Close releases idle connections.
func (b *Binding) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// Origin is the bound origin, scheme://host[:port].
func (b *Binding) Origin() string { return b.origin }

func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}

// AddressError refuses a dial to a non-public address.
type AddressError struct {
	Addr netip.Addr
	Why  string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("address %s is %s; requests to it are refused unless the operator sets SLUICE_HTTP_ALLOW_PRIVATE=true", e.Addr, e.Why)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Blocked says why an address may not be dialled by default ("" when it may).
func Blocked(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return "multicast"
	case a.Is4() && (cgnat.Contains(a) || a.As4()[0] == 0):
		return "not public (RFC 6598 or 0.0.0.0/8)"
	}
	return ""
}

// checkAddress runs at dial time on the address actually connected to, after name
// resolution: a hostname that resolves to 127.0.0.1 (or is rebound to it) is refused too.
func (b *Binding) checkAddress(_, address string, _ syscall.RawConn) error {
	if b.cfg.AllowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("dialling %q: not an IP address", address)
	}
	if why := Blocked(a); why != "" {
		return &AddressError{Addr: a.Unmap(), Why: why}
	}
	return nil
}

// errCrossOrigin stops a redirect: the 3xx answer goes back to the plugin.
func (b *Binding) checkRedirect(req *http.Request, via []*http.Request) error {
	if originOf(req.URL) != b.origin || len(via) >= maxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// capErr builds the error the plugin reads, with its ABI status.
func capErr(st abi.Status, format string, args ...any) error {
	return &runtime.CapabilityError{Status: st, Msg: fmt.Sprintf(format, args...)}
}

var secretRefRE = regexp.MustCompile(`\{secret:([^{}]*)\}`)

// ExpandSecrets replaces every {secret:NAME} in s with the bound secret NAME. An unknown
// name is an error naming it (never a value).
func (b *Binding) ExpandSecrets(s string) (string, error) {
	if !strings.Contains(s, "{secret:") {
		return s, nil
	}
	var missing string
	out := secretRefRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[len("{secret:") : len(m)-1]
		v, ok := b.secrets[name]
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", &runtime.CapabilityError{Status: abi.StatusBadArgument, Code: "unknown_secret",
			Msg: fmt.Sprintf("unknown secret %q: the export binds %s", truncate(missing, 64), b.secretNames())}
	}
	return out, nil
}

func (b *Binding) secretNames() string {
	if len(b.secrets) == 0 {
		return "no secret (a secret field needs the binding http.secret_NAME)"
	}
	names := make([]string, 0, len(b.secrets))
	for n := range b.secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	return "the secrets " + strings.Join(names, ", ")
}

// scrub replaces every bound secret's value in s: whatever a server echoes back, the
// plugin (and so the run's log and the API) never reads a secret.
func (b *Binding) scrub(s string) string {
	for _, v := range b.secrets {
		if len(v) >= minSecretLenToScrubResponse {
			s = strings.ReplaceAll(s, v, redactedSecret)
		}
	}
	return s
}

var forbiddenHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
	"Te", "Trailer", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection"}

var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")

var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// Request implements runtime.HTTPCaller.
func (b *Binding) Request(ctx context.Context, raw []byte, body runtime.Upload) ([]byte, error) {
	var r abi.HTTPRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&r); err != nil {
		return nil, capErr(abi.StatusBadArgument, "invalid http request JSON: %v", err)
	}
	if r.Op != opRequest {
		return nil, capErr(abi.StatusUnimplemented, "unknown http operation %q (want %q)", truncate(r.Op, 64), opRequest)
	}
	target, err := b.resolve(r.URL)
	if err != nil {
		return nil, err
	}
	var payload []byte
	var bd *Body
	switch {
	case body != nil && r.Body != "":
		return nil, capErr(abi.StatusBadArgument, "a request has body_upload or body, not both")
	case body != nil:
		var ok bool
		if bd, ok = body.(*Body); !ok || bd.b != b {
			return nil, capErr(abi.StatusBadArgument, "upload %d is not an http_body of this run", r.BodyUpload)
		}
		payload = bd.buf.Bytes()
	case r.Body != "":
		// {secret:NAME} in a string body too (an OAuth client_secret in a form body).
		expanded, err := b.ExpandSecrets(r.Body)
		if err != nil {
			return nil, err
		}
		payload = []byte(expanded)
	}
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
		if payload != nil {
			method = http.MethodPost
		}
	}
	if !slices.Contains(methods, method) {
		return nil, capErr(abi.StatusBadArgument, "method %q is not allowed (want one of %s)", truncate(r.Method, 16), strings.Join(methods, ", "))
	}
	if len(r.Headers) > maxHeaders {
		return nil, capErr(abi.StatusBadArgument, "%d headers; at most %d", len(r.Headers), maxHeaders)
	}
	timeout := b.cfg.RequestTimeout
	if r.TimeoutMS > 0 && time.Duration(r.TimeoutMS)*time.Millisecond < timeout {
		timeout = time.Duration(r.TimeoutMS) * time.Millisecond
	}
	limit := int64(DefaultResponseBytes)
	if r.MaxResponseBytes > 0 {
		limit = r.MaxResponseBytes
	}
	limit = min(limit, b.cfg.MaxResponseBytes)

	hdr := http.Header{}
	hdr.Set("User-Agent", "sluice-http-capability/1")
	if bd != nil {
		if bd.contentType != "" {
			hdr.Set("Content-Type", bd.contentType)
		}
		if bd.contentEncoding != "" {
			hdr.Set("Content-Encoding", bd.contentEncoding)
		}
	}
	for k, v := range r.Headers {
		if !headerNameRE.MatchString(k) {
			return nil, capErr(abi.StatusBadArgument, "invalid header name %q", truncate(k, 64))
		}
		if slices.ContainsFunc(forbiddenHeaders, func(f string) bool { return strings.EqualFold(f, k) }) {
			return nil, capErr(abi.StatusBadArgument, "header %q is set by the host", k)
		}
		if len(v) > maxHeaderValueBytes || strings.ContainsAny(v, "\r\n\x00") {
			return nil, capErr(abi.StatusBadArgument, "header %q: value longer than %d bytes or with CR, LF or NUL", k, maxHeaderValueBytes)
		}
		if v, err = b.ExpandSecrets(v); err != nil {
			return nil, err
		}
		hdr.Set(k, v)
	}
	out := abi.HTTPResponse{RequestBytes: int64(len(payload))}
	start := time.Now()
	var waited time.Duration
	for {
		if b.requests >= b.cfg.MaxRequestsPerRun {
			return nil, capErr(abi.StatusLimitExceeded, "at most %d http requests per run", b.cfg.MaxRequestsPerRun)
		}
		b.requests++
		out.Attempts++
		resp, data, err := b.send(ctx, method, target, hdr, payload, bd, timeout, limit)
		if err != nil {
			return nil, err
		}
		wait := retryAfter(resp, time.Now())
		if r.WaitRetryAfterMS > 0 && out.Attempts < maxSends && (resp.StatusCode == 429 || resp.StatusCode == 503) &&
			wait >= 0 && wait <= time.Duration(r.WaitRetryAfterMS)*time.Millisecond && waited+wait <= maxWaitPerRequest {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, &runtime.CapabilityError{Status: abi.StatusCancelled, Msg: "http request: run " + ctx.Err().Error(), Err: ctx.Err()}
			case <-t.C:
			}
			waited += wait
			continue
		}
		out.Status = resp.StatusCode
		if int64(len(data)) > limit {
			data, out.BodyTruncated = data[:limit], true
		}
		out.Body = b.scrub(strings.ToValidUTF8(string(data), "\uFFFD"))
		for _, h := range r.ResponseHeaders {
			if vs := resp.Header.Values(h); len(vs) > 0 {
				if out.Headers == nil {
					out.Headers = map[string]string{}
				}
				out.Headers[http.CanonicalHeaderKey(h)] = b.scrub(strings.Join(vs, ", "))
			}
		}
		break
	}
	out.DurationMS, out.WaitedMS = time.Since(start).Milliseconds(), waited.Milliseconds()
	doc, err := json.Marshal(out)
	if err != nil {
		return nil, capErr(abi.StatusInternal, "encoding the response: %v", err)
	}
	return doc, nil
}

const (
	maxSends          = 3
	maxWaitPerRequest = 30 * time.Second
)

// send makes one exchange and reads at most limit+1 bytes of the answer.
func (b *Binding) send(ctx context.Context, method string, target *url.URL, hdr http.Header, payload []byte, bd *Body,
	timeout time.Duration, limit int64) (*http.Response, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, target.String(), nil)
	if err != nil {
		return nil, nil, capErr(abi.StatusBadArgument, "building the request: %v", err)
	}
	if payload != nil {
		// The transport may read a body after Do returns (an early answer); a body's storage
		// is reused only once every reader of it is closed (Body.release).
		req.GetBody = func() (io.ReadCloser, error) { return bd.reader(payload), nil }
		req.Body, _ = req.GetBody()
		req.ContentLength = int64(len(payload))
	}
	req.Header = hdr.Clone()
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, nil, b.transportError(ctx, rctx, err, timeout)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, b.transportError(ctx, rctx, fmt.Errorf("reading the response body: %w", err), timeout)
	}
	return resp, data, nil
}

// retryAfter reads a response's Retry-After (seconds or an HTTP date); -1 without one.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return -1
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// resolve turns the plugin's URL (relative to the base URL, or absolute) into the target,
// refusing any other origin.
func (b *Binding) resolve(raw string) (*url.URL, error) {
	if !utf8.ValidString(raw) || strings.ContainsAny(raw, "\r\n\x00") {
		return nil, capErr(abi.StatusBadArgument, "invalid url")
	}
	ref, err := url.Parse(raw)
	if err != nil {
		return nil, capErr(abi.StatusBadArgument, "invalid url %q: %v", truncate(raw, 200), err)
	}
	if ref.User != nil {
		return nil, capErr(abi.StatusBadArgument, "url carries user information; use a header with a bound secret")
	}
	target := b.base.ResolveReference(ref)
	target.Fragment, target.RawFragment = "", ""
	if o := originOf(target); o != b.origin {
		return nil, capErr(abi.StatusDenied, "url %q is on origin %s; this export binds only %s", truncate(redactURL(target), 200), o, b.origin)
	}
	return target, nil
}

// transportError classifies a failed exchange: the run's own end is cancelled, a refused
// address denied, a certificate fatal, anything else (timeouts, resets, refused
// connections, DNS) retryable. The message never holds a header, so never a secret.
func (b *Binding) transportError(runCtx, reqCtx context.Context, err error, timeout time.Duration) error {
	var ae *AddressError
	var ue *url.Error
	msg := err.Error()
	if errors.As(err, &ue) {
		msg = ue.Err.Error()
	}
	var cert *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case runCtx.Err() != nil:
		return &runtime.CapabilityError{Status: abi.StatusCancelled, Msg: "http request: run " + runCtx.Err().Error(), Err: runCtx.Err()}
	case errors.As(err, &ae):
		return &runtime.CapabilityError{Status: abi.StatusDenied, Msg: ae.Error(), Err: err}
	case reqCtx.Err() != nil:
		// Not wrapped: the host reads a context error in the chain as the run's own end.
		return &runtime.CapabilityError{Status: abi.StatusRetryableIO, Code: "timeout", Msg: fmt.Sprintf("http request timed out after %s", timeout)}
	case errors.As(err, &cert) || errors.As(err, &unknownAuth) || errors.As(err, &hostname):
		return &runtime.CapabilityError{Status: abi.StatusFatalIO, Code: "tls", Msg: "http request: " + b.scrub(msg), Err: err}
	}
	return &runtime.CapabilityError{Status: abi.StatusRetryableIO, Msg: "http request: " + b.scrub(msg), Err: err}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Sink is the http_body upload sink of this binding.
func (b *Binding) Sink() runtime.ObjectStore { return bodySink{b} }

type bodySink struct{ b *Binding }

func (s bodySink) Create(_ context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	d := &Body{b: s.b, key: key, contentType: opts.ContentType, contentEncoding: opts.ContentEncoding}
	if s.b.spare != nil {
		d.buf = *bytes.NewBuffer(s.b.spare[:0])
		s.b.spare = nil
	}
	if v, ok := opts.Options[OptionAPIKey]; ok {
		k, ok := v.(string)
		if !ok {
			return nil, capErr(abi.StatusBadArgument, "http_body option %q must be a string", OptionAPIKey)
		}
		d.apiKey = k
	}
	return d, nil
}

// OptionAPIKey is the http_body UploadSpec option holding the "api_key" of a posthog_batch
// body encoded into it: a literal or {secret:NAME}.
const OptionAPIKey = "api_key"

// Body is a request body held in host memory (an http_body upload). Host encoders write
// into it; a request sends it; upload_abort or upload_commit releases it.
type Body struct {
	b                            *Binding
	key                          string
	contentType, contentEncoding string
	buf                          bytes.Buffer
	apiKey                       string
	done                         bool
	readers                      atomic.Int32 // request body readers not yet closed
}

// reader is one request body over payload (the body's bytes, or a raw body when d is nil).
func (d *Body) reader(payload []byte) io.ReadCloser {
	if d == nil {
		return io.NopCloser(bytes.NewReader(payload))
	}
	d.readers.Add(1)
	return &bodyReader{Reader: bytes.NewReader(payload), d: d}
}

type bodyReader struct {
	*bytes.Reader
	d      *Body
	closed atomic.Bool
}

func (r *bodyReader) Close() error {
	if !r.closed.Swap(true) {
		r.d.readers.Add(-1)
	}
	return nil
}

// APIKey is the body's posthog_batch api_key with its secret expanded.
func (d *Body) APIKey() (string, error) { return d.b.ExpandSecrets(d.apiKey) }

// Write implements runtime.Upload.
func (d *Body) Write(p []byte) (int, error) {
	if d.done {
		return 0, capErr(abi.StatusNotFound, "http body %q was released", d.key)
	}
	if d.b.bodyBytes+int64(len(p)) > d.b.cfg.MaxBodyBytes {
		return 0, capErr(abi.StatusLimitExceeded, "http bodies of a run hold at most %d bytes at once; send and release a body before the next", d.b.cfg.MaxBodyBytes)
	}
	d.b.bodyBytes += int64(len(p))
	return d.buf.Write(p)
}

// Written implements runtime.Upload.
func (d *Body) Written() int64 { return int64(d.buf.Len()) }

func (d *Body) release() {
	if !d.done {
		d.b.bodyBytes -= int64(d.buf.Len())
		if c := d.buf.Bytes(); d.readers.Load() == 0 && cap(c) > cap(d.b.spare) && cap(c) <= maxSpareBytes {
			d.b.spare = c[:0]
		}
		d.buf = bytes.Buffer{}
		d.done = true
	}
}

// maxSpareBytes bounds the storage a binding keeps between bodies.
const maxSpareBytes = 8 << 20

// Commit implements runtime.Upload: it releases the body (nothing is stored).
func (d *Body) Commit(context.Context) (runtime.ObjectInfo, error) {
	n := int64(d.buf.Len())
	d.release()
	return runtime.ObjectInfo{Key: d.key, Bytes: n}, nil
}

// Abort implements runtime.Upload.
func (d *Body) Abort(context.Context) error {
	d.release()
	return nil
}

// EncodeOptions are the options an encoder writing spec into w needs from the http
// capability: a posthog_batch body's api_key, an option of the http_body upload it is written
// into (OptionAPIKey), with its secret expanded. Other writers and formats need none. Every
// EncoderFactory of a host that binds http uses it.
func EncodeOptions(w io.Writer, spec abi.EncoderSpec) ([]encode.Option, error) {
	d, ok := w.(*Body)
	if !ok || spec.Format != encode.FormatPostHogBatch {
		return nil, nil
	}
	key, err := d.APIKey()
	if err != nil {
		return nil, err
	}
	return []encode.Option{encode.APIKey(key)}, nil
}
