package objstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// gcsChunkAlign: a resumable upload's chunks are multiples of 256 KiB.
const gcsChunkAlign = 256 << 10

// GCSConfig binds a Store to one Google Cloud Storage bucket and prefix. It comes from the
// export's destination config (and, for Endpoint, the host's settings) and is never shown
// to the plugin.
type GCSConfig struct {
	Bucket string // required
	Prefix string // object names are written under Prefix + "/"; may be empty
	// CredentialsJSON is a service-account key (secret), the JSON file Google issues. Only
	// keys of type service_account are accepted: other credential types name files,
	// commands or URLs the host would read or call.
	CredentialsJSON []byte
	// Endpoint, when set, is the JSON API base URL used instead of Google's
	// (http://127.0.0.1:PORT/storage/v1/: fake-gcs-server, an emulator). Without
	// CredentialsJSON its requests carry no authentication.
	Endpoint string
	// PartSize is the resumable upload's chunk size: default DefaultPartSize, at least
	// MinPartSize, rounded up to a multiple of 256 KiB. An Upload holds about one chunk.
	PartSize int64
	// MaxRetries is how many times a failed chunk (or a single-request upload) is retried
	// with exponential backoff and jitter; 0 means DefaultMaxRetries, negative none.
	MaxRetries int
	// RetryBaseDelay is the first backoff delay (default 200ms); each retry doubles it.
	RetryBaseDelay time.Duration
	// HTTPClient, if set, sends every request as it is: it then carries any
	// authentication, and CredentialsJSON is not used.
	HTTPClient *http.Client
}

// GCS bucket names: 3 to 222 lower-case letters, digits, dots, hyphens and underscores,
// starting and ending with a letter or digit.
var gcsBucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// ErrNoGCSCredentials: a GCS store with no service-account key and no endpoint of the host's.
var ErrNoGCSCredentials = errors.New("no credentials: a GCS destination needs a service-account key")

type gcsStore struct {
	client     *storage.Client
	bucket     *storage.BucketHandle
	prefix     string
	chunkSize  int
	maxRetries int
	retry      []storage.RetryOption // backoff and policy; each call adds its error function
}

// NewGCS returns a Store bound to cfg.Bucket and cfg.Prefix. It does no I/O; Close releases
// the client.
func NewGCS(ctx context.Context, cfg GCSConfig) (Store, error) {
	if !gcsBucketRE.MatchString(cfg.Bucket) {
		return nil, gcsConfigErr(fmt.Sprintf("invalid bucket name %q", cfg.Bucket))
	}
	prefix, err := validatePrefix(cfg.Prefix)
	if err != nil {
		return nil, &Error{Op: "gcs config", Err: err, class: Fatal}
	}
	chunk := cfg.PartSize
	switch {
	case chunk == 0:
		chunk = DefaultPartSize
	case chunk < MinPartSize || chunk > MaxPartSize:
		return nil, gcsConfigErr(fmt.Sprintf("chunk size %d outside [%d, %d]", chunk, MinPartSize, MaxPartSize))
	}
	chunk = (chunk + gcsChunkAlign - 1) / gcsChunkAlign * gcsChunkAlign
	maxRetries, base := cfg.MaxRetries, cfg.RetryBaseDelay
	switch {
	case maxRetries == 0:
		maxRetries = DefaultMaxRetries
	case maxRetries < 0:
		maxRetries = 0
	}
	if base <= 0 {
		base = 200 * time.Millisecond
	}

	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, gcsConfigErr(fmt.Sprintf("invalid endpoint URL %q", cfg.Endpoint))
		}
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	switch {
	case cfg.HTTPClient != nil:
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	case len(cfg.CredentialsJSON) > 0:
		var probe map[string]any
		if err := json.Unmarshal(cfg.CredentialsJSON, &probe); err != nil {
			return nil, gcsConfigErr("the service-account key is not a JSON object")
		}
		if probe["type"] != "service_account" {
			return nil, gcsConfigErr(fmt.Sprintf("the key's type is %q, want service_account", fmt.Sprint(probe["type"])))
		}
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, cfg.CredentialsJSON))
	case cfg.Endpoint != "":
		opts = append(opts, option.WithoutAuthentication())
	default:
		return nil, &Error{Op: "gcs config", Err: ErrNoGCSCredentials, class: Fatal}
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, &Error{Op: "gcs config", Err: err, class: Fatal}
	}
	s := &gcsStore{client: client, bucket: client.Bucket(cfg.Bucket), prefix: prefix, chunkSize: int(chunk), maxRetries: maxRetries}
	s.retry = []storage.RetryOption{
		storage.WithBackoff(gax.Backoff{Initial: base, Max: maxBackoff, Multiplier: 2}),
		storage.WithMaxAttempts(maxRetries + 1),
		// Keys are deterministic per run interval and an upload replaces the object whole,
		// so a repeated write is safe: retry it as the S3 and Azure stores do.
		storage.WithPolicy(storage.RetryAlways),
	}
	return s, nil
}

// retryer is the store's retry settings with an error function that retries what Classify
// calls Retryable, at most maxRetries times in a row: the client retries a resumable
// upload's chunks until a deadline (ChunkRetryDeadline) and ignores WithMaxAttempts there,
// so the count is kept here and reset by each chunk that gets through (reset).
func (s *gcsStore) retryer() (opts []storage.RetryOption, reset func()) {
	var fails atomic.Int32
	shouldRetry := func(err error) bool {
		return Classify(wrapGCS("", "", err)) == Retryable && int(fails.Add(1)) <= s.maxRetries
	}
	return append(slices.Clip(s.retry), storage.WithErrorFunc(shouldRetry)), func() { fails.Store(0) }
}

func gcsConfigErr(msg string) error {
	return &Error{Op: "gcs config", Err: errors.New(msg), class: Fatal}
}

// Close releases the client.
func (s *gcsStore) Close() error { return s.client.Close() }

// Check reads the bucket's metadata (storage.buckets.get), without writing.
func (s *gcsStore) Check(ctx context.Context) error {
	opts, _ := s.retryer()
	_, err := s.bucket.Retryer(opts...).Attrs(ctx)
	return wrapGCS("GetBucket", "", err)
}

func (s *gcsStore) Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error) {
	full, err := fullKey(s.prefix, key)
	if err != nil {
		return nil, &Error{Op: "gcs create", Key: key, Err: err, class: Fatal}
	}
	uctx, cancel := context.WithCancel(ctx)
	retry, reset := s.retryer()
	w := s.bucket.Object(full).Retryer(retry...).NewWriter(uctx)
	w.ChunkSize = s.chunkSize
	w.ProgressFunc = func(int64) { reset() } // a chunk got through
	w.ContentType = opts.ContentType
	w.ContentEncoding = opts.ContentEncoding
	w.Metadata = opts.Metadata
	return &gcsUpload{w: w, key: full, cancel: cancel}, nil
}

// gcsUpload is one resumable upload (Writer with ChunkSize = part size: the client holds one
// chunk, sends it while Write blocks, and retries it). An object smaller than a chunk is
// sent in one request on Commit. Commit closes the writer, which finalises the object;
// Abort cancels the writer's context: the final chunk is never sent, so no object appears
// and an existing object at the key is untouched. The resumable session the upload opened
// expires on Google's side (after a week).
type gcsUpload struct {
	w        *storage.Writer
	key      string
	cancel   context.CancelFunc
	written  atomic.Int64
	state    uploadState
	finalErr error
}

func (u *gcsUpload) Written() int64 { return u.written.Load() }

func (u *gcsUpload) Write(p []byte) (int, error) {
	if u.state != stateOpen {
		if u.state == stateFailed {
			return 0, u.finalErr
		}
		return 0, ErrClosed
	}
	n, err := u.w.Write(p)
	u.written.Add(int64(n))
	if err != nil {
		return n, u.fail(wrapGCS("upload", u.key, err))
	}
	return n, nil
}

func (u *gcsUpload) Commit(ctx context.Context) (ObjectInfo, error) {
	if u.state != stateOpen {
		if u.state == stateFailed {
			return ObjectInfo{}, u.finalErr
		}
		return ObjectInfo{}, ErrClosed
	}
	// The writer runs under the context of Create; a Commit cancelled by its own context
	// stops it too.
	stop := context.AfterFunc(ctx, u.cancel)
	err := u.w.Close()
	stop()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = ctx.Err()
		}
		return ObjectInfo{}, u.fail(wrapGCS("upload", u.key, err))
	}
	u.state = stateCommitted
	u.cancel()
	info := ObjectInfo{Key: u.key, Bytes: u.written.Load()}
	if a := u.w.Attrs(); a != nil {
		info.ETag = a.Etag
	}
	return info, nil
}

func (u *gcsUpload) fail(err error) error {
	u.state = stateFailed
	u.finalErr = err
	u.cancel()
	return err
}

func (u *gcsUpload) Abort(context.Context) error {
	if u.state != stateOpen {
		return nil
	}
	u.state = stateAborted
	u.cancel()
	_ = u.w.Close() // returns the cancellation; the object is not created
	return nil
}

// wrapGCS turns a client error into an *Error that keeps the HTTP status and the first
// error reason ("forbidden", "notFound", "rateLimitExceeded"...).
func wrapGCS(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Op: "gcs " + op, Key: key, Err: err}
	var ge *googleapi.Error
	var ae *auth.Error
	switch {
	case errors.As(err, &ge):
		e.Status = ge.Code
		if len(ge.Errors) > 0 {
			e.Code = ge.Errors[0].Reason
		}
		e.class = classify(err, "", e.Status)
	case errors.Is(err, storage.ErrBucketNotExist), errors.Is(err, storage.ErrObjectNotExist):
		e.Code, e.Status, e.class = "notFound", http.StatusNotFound, NotFound
	case errors.As(err, &ae) && ae.Response != nil:
		// The token endpoint refused the service-account key (invalid_grant: a revoked or
		// deleted key, a wrong client email), or failed.
		e.Status = ae.Response.StatusCode
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(ae.Body, &body)
		e.Code = body.Error
		switch {
		case ae.Temporary():
			e.class = Retryable
		case e.Status >= 400 && e.Status < 500:
			e.class = Denied
		default:
			e.class = classify(err, "", e.Status)
		}
	default:
		e.class = classify(err, "", 0)
	}
	return e
}
