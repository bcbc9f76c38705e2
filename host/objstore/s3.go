package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

const (
	// DefaultPartSize is the multipart part size used when S3Config.PartSize is 0.
	DefaultPartSize = 50 << 20
	// MinPartSize is S3's smallest part (every part but the last).
	MinPartSize = 5 << 20
	// MaxPartSize is S3's largest part.
	MaxPartSize = 5 << 30
	// DefaultConcurrency is the number of parts in flight when S3Config.Concurrency is 0.
	// 2 bounds an upload's buffers to 3 parts (150 MiB at the default part size) instead of
	// 6: one export's encoder output (4-7 MB/s of gzip JSON Lines per core, bench/e2e.sh)
	// is far below what two S3 connections carry. See docs/performance.md, "Peak RSS".
	DefaultConcurrency = 2
	// DefaultMaxRetries is the retry count for a failed part when S3Config.MaxRetries is 0.
	DefaultMaxRetries = 3
	maxParts          = 10000
	maxBackoff        = 20 * time.Second
	cleanupTimeout    = 30 * time.Second
)

// S3Config binds a Store to one bucket and prefix. It comes from the
// export's destination config and is never shown to the plugin.
type S3Config struct {
	Bucket string
	Prefix string // keys are written under Prefix + "/"; may be empty
	Region string // default "us-east-1"
	// EndpointURL selects an S3-compatible server (R2, GCS HMAC, versitygw, ...).
	// When set, requests go to it with path-style addressing unless VirtualStyleAddressing.
	EndpointURL string
	// VirtualStyleAddressing names the bucket in the host (bucket.endpoint/key) with an
	// EndpointURL, for servers that need it (PostHog's use_virtual_style_addressing).
	VirtualStyleAddressing bool
	// Static credentials: the export's own. Both or neither.
	AccessKeyID     string
	SecretAccessKey string
	// AmbientCredentials lets a store without static credentials use the SDK's default
	// chain: the host's environment (AWS_ACCESS_KEY_ID...), shared files, web identity,
	// container or instance role. Those are the host's credentials, not the export's, and
	// they would be sent to whatever bucket and endpoint the export names, so this is an
	// operator's decision (SLUICE_S3_AMBIENT_CREDENTIALS). False (the default): NewS3
	// refuses a config without keys with a Fatal error.
	AmbientCredentials bool
	// Encryption is "", "AES256" or "aws:kms" (with an optional KMSKeyID).
	Encryption string
	KMSKeyID   string
	// PartSize is the multipart part size: default 50 MiB, at least 5 MiB.
	PartSize int64
	// Concurrency is the number of parts uploaded at once (default 2).
	// One Upload holds at most (Concurrency+1)*PartSize bytes of buffers.
	Concurrency int
	// MaxRetries is how many times a failed part (or single PutObject) is
	// retried with exponential backoff and jitter; 0 means 3, negative none.
	MaxRetries int
	// RetryBaseDelay is the first backoff delay (default 200ms); each retry doubles it.
	RetryBaseDelay time.Duration
	// HTTPClient, if set, sends every request (e.g. a custom transport).
	HTTPClient interface {
		Do(*http.Request) (*http.Response, error)
	}
}

type s3Store struct {
	client     *s3.Client
	bucket     string
	prefix     string
	sse        types.ServerSideEncryption
	kmsKeyID   *string
	partSize   int64
	conc       int
	maxRetries int
	baseDelay  time.Duration
	pool       *partPool
}

// NewS3 returns a Store bound to cfg.Bucket and cfg.Prefix.
func NewS3(ctx context.Context, cfg S3Config) (Store, error) {
	if cfg.Bucket == "" {
		return nil, configErr("bucket is required")
	}
	prefix, err := validatePrefix(cfg.Prefix)
	if err != nil {
		return nil, &Error{Op: "s3 config", Err: err, class: Fatal}
	}
	t, err := tuning{cfg.PartSize, cfg.Concurrency, cfg.MaxRetries, cfg.RetryBaseDelay}.withDefaults("part size", MaxPartSize)
	if err != nil {
		return nil, &Error{Op: "s3 config", Err: err, class: Fatal}
	}
	s := &s3Store{
		bucket:     cfg.Bucket,
		prefix:     prefix,
		partSize:   t.partSize,
		conc:       t.conc,
		maxRetries: t.maxRetries,
		baseDelay:  t.baseDelay,
	}
	switch cfg.Encryption {
	case "":
		if cfg.KMSKeyID != "" {
			return nil, configErr("KMSKeyID needs Encryption aws:kms")
		}
	case string(types.ServerSideEncryptionAes256):
		if cfg.KMSKeyID != "" {
			return nil, configErr("KMSKeyID needs Encryption aws:kms")
		}
		s.sse = types.ServerSideEncryptionAes256
	case string(types.ServerSideEncryptionAwsKms):
		s.sse = types.ServerSideEncryptionAwsKms
		if cfg.KMSKeyID != "" {
			s.kmsKeyID = aws.String(cfg.KMSKeyID)
		}
	default:
		return nil, configErr(fmt.Sprintf("unsupported encryption %q (want \"\", AES256 or aws:kms)", cfg.Encryption))
	}
	if cfg.EndpointURL != "" {
		u, err := url.Parse(cfg.EndpointURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, configErr(fmt.Sprintf("invalid endpoint URL %q", cfg.EndpointURL))
		}
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, configErr("access key id and secret access key go together")
	}
	if cfg.AccessKeyID == "" && !cfg.AmbientCredentials {
		return nil, &Error{Op: "s3 config", Err: ErrNoCredentials, class: Fatal}
	}

	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		// Plain SigV4 payload hashing; no flexible checksums, which several
		// S3-compatible servers do not implement.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, &Error{Op: "s3 config", Err: err, class: Fatal}
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.HTTPClient != nil {
			// Set here rather than through LoadDefaultConfig, which refuses
			// a custom client when AWS_CA_BUNDLE is set.
			o.HTTPClient = cfg.HTTPClient
		}
		if cfg.EndpointURL != "" {
			o.BaseEndpoint = aws.String(cfg.EndpointURL)
			o.UsePathStyle = !cfg.VirtualStyleAddressing
		}
	})
	s.pool = newPartPool(s.partSize, s.conc+1)
	return s, nil
}

// ErrNoCredentials: an S3 store without an access key, when ambient credentials are not
// allowed (S3Config.AmbientCredentials).
var ErrNoCredentials = errors.New("no access key: an S3 destination must set its own access key id and secret access key")

func configErr(msg string) error {
	return &Error{Op: "s3 config", Err: errors.New(msg), class: Fatal}
}

func (s *s3Store) Check(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	return wrapS3("HeadBucket", "", err)
}

func (s *s3Store) Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error) {
	full, err := fullKey(s.prefix, key)
	if err != nil {
		return nil, &Error{Op: "s3 create", Key: key, Err: err, class: Fatal}
	}
	u := &s3Upload{s: s, key: full, opts: opts}
	u.partUpload = newPartUpload(ctx, partsConfig{pool: s.pool, partSize: s.partSize, maxParts: maxParts, conc: s.conc, op: "s3 UploadPart"}, full)
	u.begin = u.ensureMultipart
	u.send = u.uploadPart
	u.cleanup = func(ctx context.Context) error {
		if u.uploadID == "" {
			return nil
		}
		return u.s.abort(ctx, u.key, u.uploadID)
	}
	return u, nil
}

// retry runs fn through retryLoop with the store's retry settings, wrapping S3 errors.
func (s *s3Store) retry(ctx context.Context, op, key string, fn func(context.Context) error) error {
	return retryLoop(ctx, s.maxRetries, s.baseDelay, func(err error) error { return wrapS3(op, key, err) }, fn)
}

// oneAttempt turns off the SDK's own retries for calls that retry() drives.
func oneAttempt(o *s3.Options) { o.RetryMaxAttempts = 1 }

// s3Upload is a multipart upload (or, for an object smaller than one part, a PutObject on
// Commit); the streaming of parts is partUpload's.
type s3Upload struct {
	*partUpload
	s        *s3Store
	key      string
	opts     ObjectOptions
	uploadID string // "" until the first part is dispatched

	pmu   sync.Mutex
	parts []types.CompletedPart
}

func (u *s3Upload) ensureMultipart(ctx context.Context) error {
	if u.uploadID != "" {
		return nil
	}
	// A create the server carried out but answered with an error (or whose answer was
	// lost) leaves an upload this Upload never learns the id of; Commit aborts those.
	err := u.s.retry(ctx, "CreateMultipartUpload", u.key, func(ctx context.Context) error {
		out, err := u.s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
			Bucket:               aws.String(u.s.bucket),
			Key:                  aws.String(u.key),
			ContentType:          optString(u.opts.ContentType),
			ContentEncoding:      optString(u.opts.ContentEncoding),
			Metadata:             u.opts.Metadata,
			ServerSideEncryption: u.s.sse,
			SSEKMSKeyId:          u.s.kmsKeyID,
		}, oneAttempt)
		if err != nil {
			return err
		}
		if out.UploadId == nil || *out.UploadId == "" {
			return &Error{Op: "s3 CreateMultipartUpload", Key: u.key, class: Retryable, Err: errors.New("no upload id in response")}
		}
		u.uploadID = *out.UploadId
		return nil
	})
	return err
}

// abortOthers aborts every multipart upload still open at this Upload's key except its
// own: uploads left by a create that failed on the client's side after the server
// carried it out, or by an earlier attempt at the same object whose host died. Keys are
// one per object and attempt-independent, so an open upload at a committed key is dead.
// It returns how many it aborted.
func (u *s3Upload) abortOthers(ctx context.Context) (int, error) {
	aborted := 0
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(u.s.bucket), Prefix: aws.String(u.key)}
	for {
		var out *s3.ListMultipartUploadsOutput
		err := u.s.retry(ctx, "ListMultipartUploads", u.key, func(ctx context.Context) error {
			var err error
			out, err = u.s.client.ListMultipartUploads(ctx, in, oneAttempt)
			return err
		})
		if err != nil {
			return aborted, err
		}
		for _, up := range out.Uploads {
			if aws.ToString(up.Key) != u.key || aws.ToString(up.UploadId) == u.uploadID {
				continue
			}
			if err := u.s.abort(ctx, u.key, aws.ToString(up.UploadId)); err != nil {
				return aborted, err
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) || (out.NextKeyMarker == nil && out.NextUploadIdMarker == nil) {
			return aborted, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// abort aborts one multipart upload, retrying; an upload already gone is not an error.
func (s *s3Store) abort(ctx context.Context, key, uploadID string) error {
	return s.retry(ctx, "AbortMultipartUpload", key, func(ctx context.Context) error {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(s.bucket),
			Key:      aws.String(key),
			UploadId: aws.String(uploadID),
		}, oneAttempt)
		var nsu *types.NoSuchUpload
		if errors.As(err, &nsu) {
			return nil
		}
		return err
	})
}

func (u *s3Upload) uploadPart(ctx context.Context, num int32, data []byte) error {
	return u.s.retry(ctx, "UploadPart", u.key, func(ctx context.Context) error {
		out, err := u.s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        aws.String(u.s.bucket),
			Key:           aws.String(u.key),
			UploadId:      aws.String(u.uploadID),
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data))),
		}, oneAttempt)
		if err != nil {
			return err
		}
		u.pmu.Lock()
		u.parts = append(u.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		u.pmu.Unlock()
		return nil
	})
}

func (u *s3Upload) Commit(ctx context.Context) (ObjectInfo, error) {
	if err := u.commitable(); err != nil {
		return ObjectInfo{}, err
	}
	var etag *string
	if data, ok := u.single(); ok {
		// The whole object fits in one part: a single PutObject.
		err := u.s.retry(ctx, "PutObject", u.key, func(ctx context.Context) error {
			out, err := u.s.client.PutObject(ctx, &s3.PutObjectInput{
				Bucket:               aws.String(u.s.bucket),
				Key:                  aws.String(u.key),
				Body:                 bytes.NewReader(data),
				ContentLength:        aws.Int64(int64(len(data))),
				ContentType:          optString(u.opts.ContentType),
				ContentEncoding:      optString(u.opts.ContentEncoding),
				Metadata:             u.opts.Metadata,
				ServerSideEncryption: u.s.sse,
				SSEKMSKeyId:          u.s.kmsKeyID,
			}, oneAttempt)
			if err == nil {
				etag = out.ETag
			}
			return err
		})
		if err != nil {
			return ObjectInfo{}, u.fail(err)
		}
	} else {
		if err := u.finishParts(ctx); err != nil {
			return ObjectInfo{}, u.fail(err)
		}
		parts := slices.Clone(u.parts)
		slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
		out, err := u.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket:          aws.String(u.s.bucket),
			Key:             aws.String(u.key),
			UploadId:        aws.String(u.uploadID),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err != nil {
			return ObjectInfo{}, u.fail(wrapS3("CompleteMultipartUpload", u.key, err))
		}
		etag = out.ETag
	}
	u.committed()
	info := ObjectInfo{Key: u.key, Bytes: u.written.Load(), ETag: strings.Trim(aws.ToString(etag), `"`)}
	if u.uploadID != "" {
		// The object is complete whatever this finds; a failure to clean up is reported
		// beside it, not as the commit's error.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		info.StaleUploadsAborted, info.CleanupErr = u.abortOthers(actx)
		cancel()
	}
	return info, nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
