package objstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// retryLoop runs fn until it succeeds, fails with an error that is not Retryable, the
// retries are used up or ctx ends, sleeping with exponential backoff and full jitter in
// between. wrap turns a raw client error into an *Error (and so gives it its Class).
// Every store with parts (S3, Azure) retries through it.
func retryLoop(ctx context.Context, maxRetries int, baseDelay time.Duration, wrap func(error) error, fn func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		err = wrap(err)
		if attempt >= maxRetries || Classify(err) != Retryable || ctx.Err() != nil {
			return err
		}
		d := baseDelay << attempt
		if d > maxBackoff || d <= 0 {
			d = maxBackoff
		}
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

type uploadState int

const (
	stateOpen uploadState = iota
	stateCommitted
	stateAborted
	stateFailed
)

// partsConfig is what a store with parts gives each of its uploads.
type partsConfig struct {
	pool     *sync.Pool // *[]byte with cap partSize
	partSize int64
	maxParts int32
	conc     int
	op       string // the part upload's name in errors ("s3 UploadPart", "azure StageBlock")
}

// partUpload streams an object as numbered parts of partSize bytes (S3 multipart parts,
// Azure staged blocks): a full part buffer is handed to a background sender while writing
// continues, at most conc parts in flight; Write blocks while all are busy. The buffers
// come from the store's pool, so one upload holds at most (conc+1)*partSize bytes.
//
// The backend supplies begin (run once before the first part is sent: S3's
// CreateMultipartUpload), send (one part, with its retries) and cleanup (after a failure
// or an Abort, once the parts in flight are stopped: S3's AbortMultipartUpload).
type partUpload struct {
	cfg     partsConfig
	key     string
	ctx     context.Context // bounds background part uploads
	cancel  context.CancelFunc
	begin   func(ctx context.Context) error
	send    func(ctx context.Context, num int32, data []byte) error
	cleanup func(ctx context.Context) error

	state    uploadState
	begun    bool
	buf      *[]byte // part being filled; nil until the first byte
	partNum  int32
	written  atomic.Int64
	sem      chan struct{} // one token per part in flight
	wg       sync.WaitGroup
	finalErr error // the error that failed the upload

	mu  sync.Mutex
	err error // first background failure
}

func newPartUpload(ctx context.Context, cfg partsConfig, key string) *partUpload {
	uctx, cancel := context.WithCancel(ctx)
	return &partUpload{cfg: cfg, key: key, ctx: uctx, cancel: cancel, sem: make(chan struct{}, cfg.conc)}
}

func (u *partUpload) Written() int64 { return u.written.Load() }

func (u *partUpload) setErr(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

func (u *partUpload) bgErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *partUpload) closed() error {
	if u.state == stateFailed && u.finalErr != nil {
		return u.finalErr
	}
	return ErrClosed
}

func (u *partUpload) Write(p []byte) (int, error) {
	if u.state != stateOpen {
		return 0, u.closed()
	}
	if err := u.bgErr(); err != nil {
		return 0, u.fail(err)
	}
	n := 0
	for len(p) > 0 {
		if u.buf == nil {
			u.buf = u.cfg.pool.Get().(*[]byte)
			*u.buf = (*u.buf)[:0]
		}
		b := *u.buf
		c := copy(b[len(b):cap(b)], p)
		*u.buf = b[:len(b)+c]
		p = p[c:]
		n += c
		u.written.Add(int64(c))
		if len(*u.buf) == cap(*u.buf) {
			if err := u.dispatch(); err != nil {
				return n, u.fail(err)
			}
		}
	}
	return n, nil
}

func (u *partUpload) ensureBegun(ctx context.Context) error {
	if u.begun {
		return nil
	}
	if u.begin != nil {
		if err := u.begin(ctx); err != nil {
			return err
		}
	}
	u.begun = true
	return nil
}

func (u *partUpload) nextPart() (int32, error) {
	if u.partNum >= u.cfg.maxParts {
		return 0, &Error{Op: u.cfg.op, Key: u.key, class: Fatal,
			Err: fmt.Errorf("object exceeds %d parts of %d bytes", u.cfg.maxParts, u.cfg.partSize)}
	}
	u.partNum++
	return u.partNum, nil
}

// dispatch hands the full part buffer to a background upload, blocking while conc parts
// are already in flight.
func (u *partUpload) dispatch() error {
	if err := u.ensureBegun(u.ctx); err != nil {
		return err
	}
	if u.partNum >= u.cfg.maxParts {
		_, err := u.nextPart()
		return err
	}
	select {
	case u.sem <- struct{}{}:
	case <-u.ctx.Done():
		if err := u.bgErr(); err != nil {
			return err
		}
		return &Error{Op: u.cfg.op, Key: u.key, Err: u.ctx.Err(), class: classify(u.ctx.Err(), "", 0)}
	}
	num, _ := u.nextPart()
	buf := u.buf
	u.buf = nil
	u.wg.Add(1)
	go func() {
		defer func() {
			u.cfg.pool.Put(buf)
			<-u.sem
			u.wg.Done()
		}()
		if err := u.send(u.ctx, num, *buf); err != nil {
			u.setErr(err)
			u.cancel() // stop the other parts; fail() cleans up
		}
	}()
	return nil
}

// finishParts sends the last, partial part (if any) with ctx and waits for every part in
// flight: the object's parts are then all stored, or the first error is returned.
func (u *partUpload) finishParts(ctx context.Context) error {
	if u.buf != nil && len(*u.buf) > 0 {
		num, err := u.nextPart()
		if err != nil {
			return err
		}
		if err := u.send(ctx, num, *u.buf); err != nil {
			return err
		}
	}
	u.wg.Wait()
	return u.bgErr()
}

// single is the buffered bytes when the whole object fits in one part and no part was
// sent: the backend stores it with one request.
func (u *partUpload) single() (data []byte, ok bool) {
	if u.begun || u.partNum > 0 {
		return nil, false
	}
	if u.buf != nil {
		data = *u.buf
	}
	return data, true
}

// committed ends the upload after a successful commit.
func (u *partUpload) committed() {
	u.state = stateCommitted
	u.release()
}

// fail ends the upload after an error: stops the parts in flight and lets the backend
// clean up so that nothing incomplete is left. It returns err (joined with a clean-up
// failure).
func (u *partUpload) fail(err error) error {
	if u.state != stateOpen {
		return err
	}
	if bg := u.bgErr(); bg != nil {
		err = bg // the root cause, not the cancellation it led to
	}
	u.state = stateFailed
	u.finalErr = err
	if aerr := u.stop(u.ctx); aerr != nil {
		u.finalErr = errors.Join(err, aerr)
	}
	return u.finalErr
}

func (u *partUpload) Abort(ctx context.Context) error {
	if u.state != stateOpen {
		return nil
	}
	u.state = stateAborted
	return u.stop(ctx)
}

// stop cancels and waits for the parts in flight, then runs the backend's clean-up with a
// context of its own, even when ctx is already cancelled.
func (u *partUpload) stop(ctx context.Context) error {
	u.cancel()
	u.wg.Wait()
	u.release()
	if u.cleanup == nil {
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return u.cleanup(actx)
}

func (u *partUpload) release() {
	u.cancel()
	if u.buf != nil {
		u.cfg.pool.Put(u.buf)
		u.buf = nil
	}
}

// newPartPool returns a pool of part buffers of cap partSize.
func newPartPool(partSize int64) *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, 0, partSize)
		return &b
	}}
}
