package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

const (
	// AzureMaxBlockSize is the largest block Azure stages (4000 MiB).
	AzureMaxBlockSize = 4000 << 20
	// azureMaxBlocks is the most blocks one block blob commits.
	azureMaxBlocks = 50000
)

// AzureConfig binds a Store to one Azure Blob Storage container and prefix. It comes from
// the export's destination config and is never shown to the plugin.
type AzureConfig struct {
	Container string // required
	Prefix    string // blob names are written under Prefix + "/"; may be empty
	// Credentials: a connection string (which may carry a SAS), or an account name and
	// key. Exactly one of the two.
	ConnectionString string
	AccountName      string
	AccountKey       string
	// EndpointURL is the blob service URL used with an account name and key (default
	// https://<account>.blob.core.windows.net/; Azurite: http://127.0.0.1:10000/<account>).
	EndpointURL string
	// PartSize is the block size: default DefaultPartSize, from MinPartSize to
	// AzureMaxBlockSize. The host passes the S3 part size.
	PartSize int64
	// Concurrency is the number of blocks staged at once (default DefaultConcurrency).
	// One Upload holds at most (Concurrency+1)*PartSize bytes of buffers.
	Concurrency int
	// MaxRetries is how many times a failed block (or commit, or single put) is retried
	// with exponential backoff and jitter; 0 means DefaultMaxRetries, negative none.
	MaxRetries int
	// RetryBaseDelay is the first backoff delay (default 200ms); each retry doubles it.
	RetryBaseDelay time.Duration
	// HTTPClient, if set, sends every request (e.g. a custom transport).
	HTTPClient interface {
		Do(*http.Request) (*http.Response, error)
	}
}

// Azure container names: 3 to 63 lower-case letters, digits and single hyphens, starting
// and ending with a letter or digit.
var azureContainerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

type azureStore struct {
	client     *container.Client
	name       string // container
	prefix     string
	parts      partsConfig
	maxRetries int
	baseDelay  time.Duration
}

// NewAzureBlob returns a Store bound to cfg.Container and cfg.Prefix. It does no I/O.
func NewAzureBlob(ctx context.Context, cfg AzureConfig) (Store, error) {
	_ = ctx
	if !azureContainerRE.MatchString(cfg.Container) || strings.Contains(cfg.Container, "--") {
		return nil, azureConfigErr(fmt.Sprintf("invalid container name %q (3 to 63 lower-case letters, digits and single hyphens)", cfg.Container))
	}
	prefix, err := validatePrefix(cfg.Prefix)
	if err != nil {
		return nil, &Error{Op: "azure config", Err: err, class: Fatal}
	}
	s := &azureStore{name: cfg.Container, prefix: prefix, maxRetries: cfg.MaxRetries, baseDelay: cfg.RetryBaseDelay}
	partSize, conc := cfg.PartSize, cfg.Concurrency
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize || partSize > AzureMaxBlockSize:
		return nil, azureConfigErr(fmt.Sprintf("block size %d outside [%d, %d]", partSize, MinPartSize, AzureMaxBlockSize))
	}
	switch {
	case conc == 0:
		conc = DefaultConcurrency
	case conc < 0:
		return nil, azureConfigErr("negative concurrency")
	}
	switch {
	case s.maxRetries == 0:
		s.maxRetries = DefaultMaxRetries
	case s.maxRetries < 0:
		s.maxRetries = 0
	}
	if s.baseDelay <= 0 {
		s.baseDelay = 200 * time.Millisecond
	}
	s.parts = partsConfig{pool: newPartPool(partSize), partSize: partSize, maxParts: azureMaxBlocks, conc: conc, op: "azure StageBlock"}

	opts := &container.ClientOptions{}
	// One attempt per call: retryLoop retries, with this package's classification
	opts.Retry = policy.RetryOptions{MaxRetries: -1}
	opts.Telemetry = policy.TelemetryOptions{Disabled: true}
	if cfg.HTTPClient != nil {
		opts.Transport = cfg.HTTPClient
	}
	switch {
	case cfg.ConnectionString != "" && (cfg.AccountName != "" || cfg.AccountKey != ""):
		return nil, azureConfigErr("a connection string or an account name and key, not both")
	case cfg.ConnectionString != "":
		if cfg.EndpointURL != "" {
			return nil, azureConfigErr("endpoint URL goes with an account name and key; a connection string names its own (BlobEndpoint)")
		}
		s.client, err = container.NewClientFromConnectionString(cfg.ConnectionString, cfg.Container, opts)
		if err != nil {
			// The SDK's message may quote the string, key included: say only what is wrong.
			return nil, azureConfigErr("the connection string is not valid (want AccountName=...;AccountKey=... or BlobEndpoint=...;SharedAccessSignature=...)")
		}
	case cfg.AccountName != "" && cfg.AccountKey != "":
		endpoint := cfg.EndpointURL
		if endpoint == "" {
			endpoint = "https://" + cfg.AccountName + ".blob.core.windows.net/"
		}
		u, perr := url.Parse(endpoint)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return nil, azureConfigErr(fmt.Sprintf("invalid endpoint URL %q", cfg.EndpointURL))
		}
		cred, kerr := container.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if kerr != nil {
			return nil, &Error{Op: "azure config", Err: errors.New("the account key is not valid base64"), class: Denied}
		}
		s.client, err = container.NewClientWithSharedKeyCredential(strings.TrimSuffix(endpoint, "/")+"/"+cfg.Container, cred, opts)
		if err != nil {
			return nil, &Error{Op: "azure config", Err: err, class: Fatal}
		}
	default:
		return nil, &Error{Op: "azure config", Err: ErrNoAzureCredentials, class: Fatal}
	}
	return s, nil
}

// ErrNoAzureCredentials: an Azure store with neither a connection string nor an account
// name and key.
var ErrNoAzureCredentials = errors.New("no credentials: an Azure Blob destination needs a connection string, or an account name and account key")

func azureConfigErr(msg string) error {
	return &Error{Op: "azure config", Err: errors.New(msg), class: Fatal}
}

func (s *azureStore) retry(ctx context.Context, op, key string, fn func(context.Context) error) error {
	return retryLoop(ctx, s.maxRetries, s.baseDelay, func(err error) error { return wrapAzure(op, key, err) }, fn)
}

// Check verifies the container exists and the credentials may read it (Get Container
// Properties), without writing.
func (s *azureStore) Check(ctx context.Context) error {
	_, err := s.client.GetProperties(ctx, nil)
	return wrapAzure("GetContainerProperties", "", err)
}

func (s *azureStore) Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error) {
	full, err := fullKey(s.prefix, key)
	if err != nil {
		return nil, &Error{Op: "azure create", Key: key, Err: err, class: Fatal}
	}
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, &Error{Op: "azure create", Key: full, Err: err, class: Retryable}
	}
	u := &azureUpload{s: s, blob: s.client.NewBlockBlobClient(full), key: full, opts: opts, nonce: hex.EncodeToString(nonce[:])}
	u.partUpload = newPartUpload(ctx, s.parts, full)
	u.send = u.stageBlock
	// Nothing to remove on the server: staged blocks that no commit names are not a blob,
	// and Azure discards them (see Abort).
	return u, nil
}

// azureUpload is one block blob: every full part is a staged block (Put Block), and Commit
// commits the block list (Put Block List). An object smaller than one part is a single Put
// Blob on Commit.
//
// Abort (and a failure) stops the blocks in flight and commits nothing, so no blob appears
// and an existing blob at the key is untouched. Azure has no call that removes uncommitted
// blocks by themselves: they stay, invisible and billed, until the next commit or Put Blob
// at the same name (which discards every block it does not name) or until Azure collects
// them, a week after the last block was staged.
type azureUpload struct {
	*partUpload
	s     *azureStore
	blob  *blockblob.Client
	key   string
	opts  ObjectOptions
	nonce string // this upload's block ids: a retried attempt never reuses another's blocks

	bmu    sync.Mutex
	blocks map[int32]string // part number -> block id
}

// blockID is deterministic per upload and part, and of fixed length (Azure requires every
// block id of a blob to have the same length): a retried Put Block of a part replaces the
// same block instead of adding one.
func (u *azureUpload) blockID(num int32) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "sluice-%s-%06d", u.nonce, num))
}

func (u *azureUpload) stageBlock(ctx context.Context, num int32, data []byte) error {
	id := u.blockID(num)
	err := u.s.retry(ctx, "StageBlock", u.key, func(ctx context.Context) error {
		_, err := u.blob.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(data)), nil)
		return err
	})
	if err != nil {
		return err
	}
	u.bmu.Lock()
	if u.blocks == nil {
		u.blocks = map[int32]string{}
	}
	u.blocks[num] = id
	u.bmu.Unlock()
	return nil
}

func (u *azureUpload) headers() *blob.HTTPHeaders {
	h := &blob.HTTPHeaders{}
	if u.opts.ContentType != "" {
		h.BlobContentType = &u.opts.ContentType
	}
	if u.opts.ContentEncoding != "" {
		h.BlobContentEncoding = &u.opts.ContentEncoding
	}
	return h
}

func (u *azureUpload) metadata() map[string]*string {
	if len(u.opts.Metadata) == 0 {
		return nil
	}
	m := make(map[string]*string, len(u.opts.Metadata))
	for k, v := range u.opts.Metadata {
		m[k] = &v
	}
	return m
}

func (u *azureUpload) Commit(ctx context.Context) (ObjectInfo, error) {
	if u.state != stateOpen {
		return ObjectInfo{}, u.closed()
	}
	if err := u.bgErr(); err != nil {
		return ObjectInfo{}, u.fail(err)
	}
	var etag *azcore.ETag
	if data, ok := u.single(); ok {
		err := u.s.retry(ctx, "PutBlob", u.key, func(ctx context.Context) error {
			out, err := u.blob.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), &blockblob.UploadOptions{
				HTTPHeaders: u.headers(), Metadata: u.metadata(),
			})
			etag = out.ETag
			return err
		})
		if err != nil {
			return ObjectInfo{}, u.fail(err)
		}
	} else {
		if err := u.finishParts(ctx); err != nil {
			return ObjectInfo{}, u.fail(err)
		}
		ids := make([]string, 0, u.partNum)
		for n := int32(1); n <= u.partNum; n++ {
			id, ok := u.blocks[n]
			if !ok {
				return ObjectInfo{}, u.fail(&Error{Op: "azure CommitBlockList", Key: u.key, class: Fatal, Err: fmt.Errorf("block %d was not staged", n)})
			}
			ids = append(ids, id)
		}
		err := u.s.retry(ctx, "CommitBlockList", u.key, func(ctx context.Context) error {
			out, err := u.blob.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
				HTTPHeaders: u.headers(), Metadata: u.metadata(),
			})
			etag = out.ETag
			return err
		})
		if err != nil {
			return ObjectInfo{}, u.fail(err)
		}
	}
	u.committed()
	info := ObjectInfo{Key: u.key, Bytes: u.written.Load()}
	if etag != nil {
		info.ETag = strings.Trim(string(*etag), `"`)
	}
	return info, nil
}

// Azure error codes (x-ms-error-code) that decide a class by themselves; others go by
// HTTP status (see classify).
var azureCodeClass = map[string]Class{
	"ContainerNotFound":                 NotFound,
	"BlobNotFound":                      NotFound,
	"ResourceNotFound":                  NotFound,
	"ContainerBeingDeleted":             NotFound,
	"AuthenticationFailed":              Denied,
	"AuthorizationFailure":              Denied,
	"AuthorizationPermissionMismatch":   Denied,
	"AuthorizationProtocolMismatch":     Denied,
	"AuthorizationResourceTypeMismatch": Denied,
	"AuthorizationServiceMismatch":      Denied,
	"AuthorizationSourceIPMismatch":     Denied,
	"InsufficientAccountPermissions":    Denied,
	"InvalidAuthenticationInfo":         Denied,
	"NoAuthenticationInformation":       Denied,
	"AccountIsDisabled":                 Denied,
	"ContainerDisabled":                 Denied,
	"BlobImmutableDueToPolicy":          Denied,
	"UnauthorizedBlobOverwrite":         Denied,
	"InvalidResourceName":               Fatal,
	"InvalidBlockList":                  Fatal,
	"InvalidBlobOrBlock":                Fatal,
	"InvalidBlockId":                    Fatal,
	"BlockCountExceedsLimit":            Fatal,
	"BlockListTooLong":                  Fatal,
	"RequestBodyTooLarge":               Fatal,
	"InvalidMetadata":                   Fatal,
	"EmptyMetadataKey":                  Fatal,
	"MetadataTooLarge":                  Fatal,
	"InvalidHeaderValue":                Fatal,
	"InvalidQueryParameterValue":        Fatal,
	"InvalidInput":                      Fatal,
	"InvalidUri":                        Fatal,
	"InvalidBlobType":                   Fatal,
	"LeaseIdMissing":                    Fatal,
	"LeaseIdMismatchWithBlobOperation":  Fatal,
	"UnsupportedHeader":                 Fatal,
	"InvalidXmlDocument":                Fatal,
	"ServerBusy":                        Retryable,
	"OperationTimedOut":                 Retryable,
	"InternalError":                     Retryable,
	"AccountBeingCreated":               Retryable,
	"Md5Mismatch":                       Retryable,
	"Crc64Mismatch":                     Retryable,
}

// azureResponseError keeps the SDK's *azcore.ResponseError (through Unwrap) with a one-line
// message: the SDK's own Error() is a multi-line dump of the response.
type azureResponseError struct {
	resp *azcore.ResponseError
	msg  string
}

func (e *azureResponseError) Error() string { return e.msg }
func (e *azureResponseError) Unwrap() error { return e.resp }

// wrapAzure turns an SDK error into an *Error that keeps the code and status.
func wrapAzure(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Op: "azure " + op, Key: key, Err: err}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e.Code, e.Status = re.ErrorCode, re.StatusCode
		msg := http.StatusText(re.StatusCode)
		if re.RawResponse != nil {
			e.RequestID = re.RawResponse.Header.Get("x-ms-request-id")
			if m := azureMessage(re); m != "" {
				msg = m
			}
		}
		e.Err = &azureResponseError{resp: re, msg: msg}
	}
	if c, ok := azureCodeClass[e.Code]; ok {
		e.class = c
	} else {
		e.class = classify(err, "", e.Status)
	}
	return e
}

// azureMessage is the first line of the <Message> of an Azure error body.
func azureMessage(re *azcore.ResponseError) string {
	body, err := azruntime.Payload(re.RawResponse) // read and kept by the SDK
	if err != nil {
		return ""
	}
	var doc struct {
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(body, &doc) != nil {
		return ""
	}
	m, _, _ := strings.Cut(strings.TrimSpace(doc.Message), "\n")
	return strings.TrimSpace(m)
}
