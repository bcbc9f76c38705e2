package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/runtime"
)

// MemStore is an in-memory runtime.ObjectStore that records committed objects and counts
// uploads still open (neither committed nor aborted).
type MemStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	open    int
	aborted int
	commits []Commit
	// FailCommit, when set, is returned by every Commit.
	FailCommit error
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{objects: map[string][]byte{}} }

// Create starts an upload.
func (s *MemStore) Create(ctx context.Context, key string, opts runtime.ObjectOptions) (runtime.Upload, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.open++
	s.mu.Unlock()
	return &memUpload{s: s, key: key, opts: opts}, nil
}

// Commit is one committed upload, in commit order: a key written twice has two.
type Commit struct {
	Key     string
	Data    []byte
	Options runtime.ObjectOptions
	// Encoders are the specs of the host encoders the plugin opened on the upload (via
	// Encoders or an EncoderFactory wrapped by TrackEncoders), in order; none when the plugin
	// wrote its bytes itself.
	Encoders []abi.EncoderSpec
}

// Commits returns the committed uploads from the n-th on, in commit order.
func (s *MemStore) Commits(n int) []Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= len(s.commits) {
		return nil
	}
	return slices.Clone(s.commits[n:])
}

// NumCommits is the number of commits so far.
func (s *MemStore) NumCommits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.commits)
}

// Objects returns the committed object keys, sorted.
func (s *MemStore) Objects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.objects))
	for k := range s.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Object returns a committed object's bytes.
func (s *MemStore) Object(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	return b, ok
}

// Open is the number of uploads neither committed nor aborted.
func (s *MemStore) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// Aborted is the number of aborted uploads.
func (s *MemStore) Aborted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

type memUpload struct {
	s     *MemStore
	key   string
	opts  runtime.ObjectOptions
	specs []abi.EncoderSpec
	buf   bytes.Buffer
	done  bool
}

var errClosed = errors.New("memstore: upload closed")

func (u *memUpload) Write(p []byte) (int, error) {
	if u.done {
		return 0, errClosed
	}
	return u.buf.Write(p)
}

func (u *memUpload) Written() int64 { return int64(u.buf.Len()) }

func (u *memUpload) Commit(ctx context.Context) (runtime.ObjectInfo, error) {
	if u.done {
		return runtime.ObjectInfo{}, errClosed
	}
	if u.s.FailCommit != nil {
		return runtime.ObjectInfo{}, u.s.FailCommit
	}
	u.done = true
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	u.s.open--
	data := bytes.Clone(u.buf.Bytes())
	u.s.objects[u.key] = data
	u.s.commits = append(u.s.commits, Commit{Key: u.key, Data: data, Options: u.opts, Encoders: u.specs})
	return runtime.ObjectInfo{Key: u.key, Bytes: int64(u.buf.Len()), ETag: fmt.Sprintf("mem-%d", u.buf.Len())}, nil
}

func (u *memUpload) Abort(ctx context.Context) error {
	if u.done {
		return nil
	}
	u.done = true
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	u.s.open--
	u.s.aborted++
	return nil
}

// Encoders is the host's encoder factory (package host/encode) as a runtime.EncoderFactory.
// Opened on a MemStore upload, it records the spec on the upload's Commit.
func Encoders(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
	return TrackEncoders(hostEncoders)(w, spec, cols)
}

// TrackEncoders wraps an encoder factory so that the specs opened on MemStore uploads are
// recorded on their Commit (the conformance suite decodes the object by them).
func TrackEncoders(f runtime.EncoderFactory) runtime.EncoderFactory {
	return func(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
		e, err := f(w, spec, cols)
		if u, ok := w.(*memUpload); ok && err == nil {
			u.specs = append(u.specs, spec)
		}
		return e, err
	}
}

func hostEncoders(w io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
	opts, err := httpcap.EncodeOptions(w, spec)
	if err != nil {
		return nil, err
	}
	e, err := encode.New(w, spec, cols, opts...)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// StatusErr is an error with an ABI status, as capability errors carry.
type StatusErr struct {
	Status abi.Status
	Msg    string
	Code   string
}

func (e *StatusErr) Error() string         { return e.Msg }
func (e *StatusErr) ABIStatus() abi.Status { return e.Status }
func (e *StatusErr) ABICode() string       { return e.Code }
