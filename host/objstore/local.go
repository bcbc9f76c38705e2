package objstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
)

type localStore struct {
	root   string // trusted host path
	prefix string // validated, without trailing slash; may be ""
}

// NewLocalDir returns a Store that writes files under root/prefix. root must
// exist; prefix (validated like a key) is created if missing. Every file
// operation is confined to root/prefix with os.Root, so neither ".." nor a
// symlink can make a key land outside it. Uploads go to a temporary file in
// the object's directory and are renamed into place on Commit.
func NewLocalDir(root string, prefix string) (Store, error) {
	p, err := validatePrefix(prefix)
	if err != nil {
		return nil, wrapLocal("config", "", err)
	}
	s := &localStore{root: root, prefix: p}
	r, err := s.open()
	if err != nil {
		return nil, err
	}
	r.Close()
	return s, nil
}

// open returns an os.Root for root/prefix, creating prefix if needed.
func (s *localStore) open() (*os.Root, error) {
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, wrapLocal("open root", "", err)
	}
	if s.prefix == "" {
		return r, nil
	}
	defer r.Close()
	if err := r.MkdirAll(s.prefix, 0o755); err != nil {
		return nil, wrapLocal("mkdir prefix", s.prefix, err)
	}
	pr, err := r.OpenRoot(s.prefix)
	if err != nil {
		return nil, wrapLocal("open prefix", s.prefix, err)
	}
	return pr, nil
}

func (s *localStore) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return wrapLocal("check", "", err)
	}
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return wrapLocal("check", "", err)
	}
	defer r.Close()
	dir := "."
	if s.prefix != "" {
		dir = s.prefix
		if fi, err := r.Stat(dir); err == nil && !fi.IsDir() {
			return wrapLocal("check", dir, fmt.Errorf("%s is not a directory", dir))
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return wrapLocal("check", dir, err)
		}
		// A missing prefix is created on the first upload; check that we may.
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return wrapLocal("check", dir, err)
		}
	}
	probe := path.Join(dir, ".sluice-check-"+randHex())
	f, err := r.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return wrapLocal("check", "", err)
	}
	f.Close()
	return wrapLocal("check", "", r.Remove(probe))
}

func (s *localStore) Create(ctx context.Context, key string, opts ObjectOptions) (Upload, error) {
	full, err := fullKey(s.prefix, key)
	if err != nil {
		return nil, wrapLocal("create", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrapLocal("create", full, err)
	}
	r, err := s.open()
	if err != nil {
		return nil, err
	}
	u := &localUpload{ctx: ctx, root: r, key: key, full: full, md5: md5.New()}
	// Create missing parent directories one by one, remembering which ones
	// are ours so that Abort can remove them again.
	dir := path.Dir(key)
	if dir != "." {
		p := ""
		for seg := range strings.SplitSeq(dir, "/") {
			p = path.Join(p, seg)
			switch err := r.Mkdir(p, 0o755); {
			case err == nil:
				u.dirs = append(u.dirs, p)
			case errors.Is(err, fs.ErrExist):
			default:
				u.cleanup()
				return nil, wrapLocal("create", full, err)
			}
		}
	}
	u.tmp = path.Join(dir, "."+path.Base(key)+".tmp-"+randHex())
	f, err := r.OpenFile(u.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		u.tmp = ""
		u.cleanup()
		return nil, wrapLocal("create", full, err)
	}
	u.f = f
	return u, nil
}

type localUpload struct {
	ctx     context.Context
	root    *os.Root
	key     string // relative to root (which is root/prefix)
	full    string // prefix + key
	tmp     string
	f       *os.File
	md5     hash.Hash
	dirs    []string // parent directories this upload created
	written atomic.Int64
	state   uploadState
	err     error
}

func (u *localUpload) Written() int64 { return u.written.Load() }

func (u *localUpload) Write(p []byte) (int, error) {
	if u.state != stateOpen {
		if u.err != nil {
			return 0, u.err
		}
		return 0, ErrClosed
	}
	if err := u.ctx.Err(); err != nil {
		return 0, u.fail(wrapLocal("write", u.full, err))
	}
	n, err := u.f.Write(p)
	u.md5.Write(p[:n])
	u.written.Add(int64(n))
	if err != nil {
		return n, u.fail(wrapLocal("write", u.full, err))
	}
	return n, nil
}

func (u *localUpload) Commit(ctx context.Context) (ObjectInfo, error) {
	if u.state != stateOpen {
		if u.err != nil {
			return ObjectInfo{}, u.err
		}
		return ObjectInfo{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, u.fail(wrapLocal("commit", u.full, err))
	}
	if err := u.f.Sync(); err != nil {
		return ObjectInfo{}, u.fail(wrapLocal("commit", u.full, err))
	}
	err := u.f.Close()
	u.f = nil
	if err != nil {
		return ObjectInfo{}, u.fail(wrapLocal("commit", u.full, err))
	}
	if err := u.root.Rename(u.tmp, u.key); err != nil {
		return ObjectInfo{}, u.fail(wrapLocal("commit", u.full, err))
	}
	u.tmp = ""
	// Make the rename durable: a crash must not take back a file a Completed run reported.
	d, err := u.root.Open(path.Dir(u.key))
	if err == nil {
		err = errors.Join(d.Sync(), d.Close())
	}
	if err != nil {
		return ObjectInfo{}, u.fail(wrapLocal("commit: sync directory", u.full, err))
	}
	u.state = stateCommitted
	u.root.Close()
	return ObjectInfo{Key: u.full, Bytes: u.written.Load(), ETag: hex.EncodeToString(u.md5.Sum(nil))}, nil
}

func (u *localUpload) fail(err error) error {
	u.state = stateFailed
	u.err = err
	u.cleanup()
	return err
}

func (u *localUpload) Abort(ctx context.Context) error {
	if u.state != stateOpen {
		return nil
	}
	u.state = stateAborted
	return u.cleanup()
}

// cleanup removes the temporary file and the directories this upload made.
func (u *localUpload) cleanup() error {
	var errs []error
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	if u.tmp != "" {
		if err := u.root.Remove(u.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, wrapLocal("abort", u.full, err))
		}
		u.tmp = ""
	}
	for i := len(u.dirs) - 1; i >= 0; i-- {
		u.root.Remove(u.dirs[i]) // fails, harmlessly, if another upload uses it
	}
	u.dirs = nil
	u.root.Close()
	return errors.Join(errs...)
}

func randHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
