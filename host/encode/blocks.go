package encode

import (
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Parallel stream compression (see docs/encoders.md, "Parallel compression").
//
// The uncompressed output of a JSON Lines or CSV file is cut into blocks at record
// boundaries: a block ends after the first record that brings it to BlockSize bytes or more,
// or at the end of a batch if it holds batchCut bytes or more by then.
// Each block is compressed on its own into a complete stream (a gzip member, a zstd frame, a
// snappy framed stream, an lz4 frame) and the streams are written one after the other, in
// order. Concatenated members/frames are valid files for each of these formats (RFC 1952 2.2,
// RFC 8878 3.1, the snappy framing format 4.1, the LZ4 frame format). Brotli has no such
// rule, so it stays one serial stream.
//
// Where a block ends depends only on the bytes of the records, where the batches end and
// BlockSize: not on the number of workers, GOMAXPROCS or timing. Each block's compressed
// bytes depend only on its content, the codec and the level. So the file is the same bytes
// for the same batches and settings, whatever the machine does.
//
// What has reached the destination when WriteBatch returns is deterministic too: every
// block ended so far, compressed (endBatch waits for them); less than batchCut bytes of rows
// stay behind, as the 64 KiB buffer of a serial stream did. Plugins split files on the
// upload's byte count between batches, so that count must neither depend on timing or
// workers nor lag much behind the rows.

// DefaultBlockSize is the uncompressed size at which a block is cut.
const DefaultBlockSize = 1 << 20

// batchCut is the least uncompressed size a block must reach to end at the end of a batch
// (rather than carry on into the next batch).
const batchCut = flushAt

// blockable reports whether a stream compression is written as independent blocks.
func blockable(compression string) bool {
	switch compression {
	case CompressionGzip, CompressionZstd, CompressionSnappy, CompressionLZ4:
		return true
	}
	return false
}

// blockCompressor compresses one block into one complete stream appended to dst. One value
// is used by one goroutine at a time.
type blockCompressor interface {
	compress(dst, src []byte) ([]byte, error)
}

// appendWriter is an io.Writer appending to a byte slice.
type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }

type gzipBlock struct {
	aw appendWriter
	zw *gzip.Writer
}

func (g *gzipBlock) compress(dst, src []byte) ([]byte, error) {
	g.aw.b = dst
	g.zw.Reset(&g.aw)
	if _, err := g.zw.Write(src); err != nil {
		return dst, err
	}
	err := g.zw.Close()
	out := g.aw.b
	g.aw.b = nil
	return out, err
}

type zstdBlock struct{ enc *zstd.Encoder }

func (z *zstdBlock) compress(dst, src []byte) ([]byte, error) {
	return z.enc.EncodeAll(src, dst), nil
}

type streamBlock struct {
	aw    appendWriter
	reset func(io.Writer)
	w     io.WriteCloser
}

func (s *streamBlock) compress(dst, src []byte) ([]byte, error) {
	s.aw.b = dst
	s.reset(&s.aw)
	if _, err := s.w.Write(src); err != nil {
		return dst, err
	}
	err := s.w.Close()
	out := s.aw.b
	s.aw.b = nil
	return out, err
}

// newBlockCompressor returns a constructor of compressors for a compression and level.
func newBlockCompressor(compression string, o options) (func() (blockCompressor, error), error) {
	level := func(def int) int {
		if o.levelSet {
			return o.level
		}
		return def
	}
	switch compression {
	case CompressionGzip:
		l := level(defaultGzipLevel)
		return func() (blockCompressor, error) {
			zw, err := gzip.NewWriterLevel(nil, l)
			if err != nil {
				return nil, fmt.Errorf("encode: gzip: %w", err)
			}
			return &gzipBlock{zw: zw}, nil
		}, nil
	case CompressionZstd:
		l := level(defaultZstdLevel)
		if l < int(zstd.SpeedFastest) || l > int(zstd.SpeedBestCompression) {
			return nil, fmt.Errorf("encode: zstd level %d (want 1-4)", l)
		}
		return func() (blockCompressor, error) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevel(l)),
				zstd.WithEncoderConcurrency(1))
			if err != nil {
				return nil, fmt.Errorf("encode: zstd: %w", err)
			}
			return &zstdBlock{enc: enc}, nil
		}, nil
	case CompressionSnappy:
		return func() (blockCompressor, error) {
			sw := s2.NewWriter(nil, s2.WriterSnappyCompat(), s2.WriterConcurrency(1))
			return &streamBlock{w: sw, reset: sw.Reset}, nil
		}, nil
	case CompressionLZ4:
		lv := lz4.Fast
		if o.levelSet && o.level > 0 {
			if o.level > 9 {
				return nil, fmt.Errorf("encode: lz4 level %d (want 0-9)", o.level)
			}
			lv = lz4.CompressionLevel(1 << (8 + o.level))
		}
		return func() (blockCompressor, error) {
			lw := lz4.NewWriter(nil)
			if err := lw.Apply(lz4.CompressionLevelOption(lv), lz4.ConcurrencyOption(1)); err != nil {
				return nil, fmt.Errorf("encode: lz4: %w", err)
			}
			return &streamBlock{w: lw, reset: lw.Reset}, nil
		}, nil
	}
	return nil, fmt.Errorf("%w compression %q", ErrUnsupported, compression)
}

// compressorPools keeps block compressors across files, one pool per compression and level
// (a zstd encoder holds megabytes of tables; gzip about one).
var compressorPools sync.Map // poolKey -> *sync.Pool

type poolKey struct {
	compression string
	level       int
	levelSet    bool
}

func compressorPool(compression string, o options) (*sync.Pool, error) {
	k := poolKey{compression, o.level, o.levelSet}
	if p, ok := compressorPools.Load(k); ok {
		return p.(*sync.Pool), nil
	}
	mk, err := newBlockCompressor(compression, o)
	if err != nil {
		return nil, err
	}
	c, err := mk() // checks the level
	if err != nil {
		return nil, err
	}
	p := &sync.Pool{New: func() any {
		c, err := mk()
		if err != nil {
			panic(err) // the same construction succeeded once already
		}
		return c
	}}
	p.Put(c)
	actual, _ := compressorPools.LoadOrStore(k, p)
	return actual.(*sync.Pool), nil
}

// block is one unit of work: uncompressed input, compressed output.
type block struct {
	in   []byte
	out  []byte
	err  error
	done chan struct{} // closed when out and err are set
}

// blockStream compresses blocks on up to `workers` goroutines with at most `maxInFlight`
// blocks submitted and not yet written, and writes their outputs to w in order, always from
// the caller's goroutine (the one calling submit, Write, cut and close). It is not safe for
// concurrent use by several callers.
type blockStream struct {
	w           io.Writer
	size        int
	maxInFlight int
	inline      bool // one worker: compress on the caller's goroutine, no handoff
	pool        *sync.Pool
	sem         chan struct{} // one token per running compression

	cur       []byte   // the block being filled through Write
	queue     []*block // submitted, not yet written, oldest first
	free      []*block // written, buffers reusable
	submitted int64
	err       error

	// For tests.
	allocated    int    // block values ever made
	peakInFlight int    // most blocks in flight at once
	hook         func() // run by a block's goroutine before it compresses
}

func newBlockStream(w io.Writer, compression string, o options) (*blockStream, error) {
	pool, err := compressorPool(compression, o)
	if err != nil {
		return nil, err
	}
	workers := o.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	s := &blockStream{
		w: w, size: o.blockSize, pool: pool, inline: workers == 1,
		maxInFlight: 2 * workers, sem: make(chan struct{}, workers),
	}
	s.cur = s.newBuf()
	return s, nil
}

func (s *blockStream) newBuf() []byte { return make([]byte, 0, s.size+s.size/4) }

// Write appends to the current block; cut ends it. Records must not straddle a cut.
func (s *blockStream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.cur = append(s.cur, p...)
	return len(p), nil
}

// pending is the number of bytes in the current block.
func (s *blockStream) pending() int { return len(s.cur) }

// cut submits the current block.
func (s *blockStream) cut() error {
	var err error
	s.cur, err = s.submit(s.cur)
	return err
}

// submit takes buf (a whole block, ownership passes to the stream) and returns an empty
// buffer to fill next. It blocks while maxInFlight blocks are in flight, writing the oldest
// once it is compressed.
func (s *blockStream) submit(buf []byte) ([]byte, error) {
	if s.err != nil {
		return buf[:0], s.err
	}
	for len(s.queue) >= s.maxInFlight {
		if err := s.writeHead(); err != nil {
			return buf[:0], err
		}
	}
	var b *block
	if n := len(s.free); n > 0 {
		b, s.free = s.free[n-1], s.free[:n-1]
	} else {
		b = &block{}
		s.allocated++
	}
	next := b.in[:0]
	if next == nil {
		next = s.newBuf()
	}
	b.in, b.err = buf, nil
	s.submitted++
	if s.inline {
		s.compress(b)
		s.write(b)
		return next, s.err
	}
	b.done = make(chan struct{})
	s.queue = append(s.queue, b)
	s.peakInFlight = max(s.peakInFlight, len(s.queue))
	hook := s.hook
	go func() {
		if hook != nil {
			hook()
		}
		s.sem <- struct{}{}
		s.compress(b)
		<-s.sem
		close(b.done)
	}()
	// Write whatever is already done, so bytes flow and buffers come back early.
	for len(s.queue) > 0 && isClosed(s.queue[0].done) {
		if err := s.writeHead(); err != nil {
			return next, err
		}
	}
	return next, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *blockStream) compress(b *block) {
	c := s.pool.Get().(blockCompressor)
	b.out, b.err = c.compress(b.out[:0], b.in)
	s.pool.Put(c)
}

// writeHead waits for the oldest block in flight and writes it.
func (s *blockStream) writeHead() error {
	b := s.queue[0]
	<-b.done
	copy(s.queue, s.queue[1:])
	s.queue[len(s.queue)-1] = nil
	s.queue = s.queue[:len(s.queue)-1]
	s.write(b)
	return s.err
}

// write writes a compressed block (unless an error already stuck) and recycles it.
func (s *blockStream) write(b *block) {
	if s.err == nil {
		if b.err != nil {
			s.err = b.err
		} else if _, err := s.w.Write(b.out); err != nil {
			s.err = err
		}
	}
	// A block grown far past the size by a huge record is not kept.
	if cap(b.in) > 2*s.size+maxKeptBuffer {
		b.in = nil
	}
	if cap(b.out) > 2*s.size+maxKeptBuffer {
		b.out = nil
	}
	b.in = b.in[:0]
	s.free = append(s.free, b)
}

// close submits the current block (or an empty one if nothing was ever submitted, so that an
// empty file is still one valid stream), waits for every block and writes them in order.
// After an error it still waits for the blocks in flight (nothing of the stream runs after
// close returns) but writes nothing more.
func (s *blockStream) close() error {
	if s.err == nil && (len(s.cur) > 0 || s.submitted == 0) {
		s.cur, _ = s.submit(s.cur)
	}
	for len(s.queue) > 0 {
		s.writeHead()
	}
	s.cur = nil
	s.free = nil
	return s.err
}

// drain waits for every block submitted and writes them, in order. The block being filled
// stays.
func (s *blockStream) drain() error {
	for len(s.queue) > 0 {
		if err := s.writeHead(); err != nil {
			return err
		}
	}
	return s.err
}

// abort waits for the blocks in flight without writing them.
func (s *blockStream) abort() {
	for _, b := range s.queue {
		<-b.done
	}
	s.queue = nil
	s.cur, s.free = nil, nil
}
