// Package objstore is the host's object-upload capability.
//
// A Store is bound to exactly one location (an S3 bucket and key prefix, or a
// directory on local disk) by the host, from the export's destination config.
// The plugin that drives a Store names objects only by keys relative to that
// location; it never sees the bucket's credentials and cannot reach objects
// outside the bound prefix: keys are validated (ValidateKey) and, on local
// disk, every file operation goes through an os.Root so that symlinks cannot
// lead outside the bound directory either.
//
// Uploads stream: an Upload never holds the whole object in memory. On S3 the
// memory held by one Upload is at most (Concurrency+1)*PartSize.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen is the largest object key accepted, in bytes, prefix included
// (S3's own limit).
const MaxKeyLen = 1024

// ErrInvalidKey is wrapped by every error caused by an unacceptable key or
// prefix (syntax, length, or a path that would escape the bound location).
var ErrInvalidKey = errors.New("objstore: invalid key")

// ErrClosed is returned by Write or Commit on an Upload that was already
// committed, aborted, or failed.
var ErrClosed = errors.New("objstore: upload closed")

// Store writes objects under one bound location (bucket+prefix, or a directory).
type Store interface {
	// Create starts an object at key (relative to the bound prefix). The
	// context bounds the whole upload, including parts uploaded in the
	// background while the caller keeps writing.
	Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error)
	// Check verifies credentials and access without writing object data
	// (HeadBucket on S3, stat and a probe file on local disk), for a
	// destination "test" step.
	Check(ctx context.Context) error
}

// ObjectOptions are the object's stored attributes.
type ObjectOptions struct {
	ContentType     string
	ContentEncoding string
	Metadata        map[string]string
}

// Upload is one object being written. It is not safe for concurrent use,
// except Written, which may be read from any goroutine. Exactly one of Commit
// or Abort must end it; Abort after a successful Commit is a no-op, so
// "defer u.Abort(ctx)" is the idiom.
type Upload interface {
	io.Writer                                       // streams; never buffers the whole object
	Written() int64                                 // bytes accepted so far
	Commit(ctx context.Context) (ObjectInfo, error) // completes (CompleteMultipartUpload / rename)
	Abort(ctx context.Context) error                // removes every trace (AbortMultipartUpload / temp file)
}

// ObjectInfo describes a committed object.
type ObjectInfo struct {
	Key   string // full key within the bucket (or path within the root), prefix included
	Bytes int64
	ETag  string
	// StaleUploadsAborted counts other multipart uploads open at the same key that the
	// commit aborted (left by a create retried after the server carried it out, or by an
	// earlier attempt whose host died). CleanupErr is why that clean-up did not finish;
	// the object itself is committed either way.
	StaleUploadsAborted int
	CleanupErr          error
}

// ValidateKey reports whether key is acceptable as an object key relative to
// a bound prefix: non-empty, valid UTF-8, at most MaxKeyLen bytes, no leading
// "/", no backslash, no empty, "." or ".." segment, no control character.
// The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	return validatePath(key)
}

// validatePrefix accepts "" or a key-shaped prefix (a trailing "/" is allowed
// and ignored) and returns it without the trailing slash.
func validatePrefix(prefix string) (string, error) {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix != "" {
			return "", fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
		}
		return "", nil
	}
	if err := validatePath(p); err != nil {
		return "", fmt.Errorf("prefix: %w", err)
	}
	return p, nil
}

func validatePath(key string) error {
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidKey)
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character %U in %q", ErrInvalidKey, r, key)
		}
		if r == '\\' {
			return fmt.Errorf("%w: backslash in %q", ErrInvalidKey, key)
		}
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w: absolute path %q", ErrInvalidKey, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: empty segment in %q", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q segment in %q", ErrInvalidKey, seg, key)
		}
	}
	return nil
}

// fullKey joins an already-validated prefix and key and checks the total length.
func fullKey(prefix, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	full := key
	if prefix != "" {
		full = prefix + "/" + key
	}
	if len(full) > MaxKeyLen {
		return "", fmt.Errorf("%w: %d bytes with prefix, more than %d", ErrInvalidKey, len(full), MaxKeyLen)
	}
	return full, nil
}
