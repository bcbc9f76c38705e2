package encode

import (
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Default stream compression levels: fast settings, since the host encodes many runs at once
// and the bytes go over a network anyway.
const (
	defaultGzipLevel   = 5
	defaultZstdLevel   = int(zstd.SpeedFastest)
	defaultBrotliLevel = 4
)

// compressStream is a stream compressor around the destination writer.
type compressStream struct {
	io.Writer
	close func() error
}

func (c *compressStream) Close() error { return c.close() }

func newCompressStream(w io.Writer, compression string, o options) (*compressStream, error) {
	level := func(def int) int {
		if o.levelSet {
			return o.level
		}
		return def
	}
	switch compression {
	case CompressionGzip:
		zw, err := gzip.NewWriterLevel(w, level(defaultGzipLevel))
		if err != nil {
			return nil, fmt.Errorf("encode: gzip: %w", err)
		}
		return &compressStream{zw, zw.Close}, nil
	case CompressionZstd:
		l := level(defaultZstdLevel)
		if l < int(zstd.SpeedFastest) || l > int(zstd.SpeedBestCompression) {
			return nil, fmt.Errorf("encode: zstd level %d (want 1-4)", l)
		}
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevel(l)),
			zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("encode: zstd: %w", err)
		}
		return &compressStream{zw, zw.Close}, nil
	case CompressionBrotli:
		l := level(defaultBrotliLevel)
		if l < brotli.BestSpeed || l > brotli.BestCompression {
			return nil, fmt.Errorf("encode: brotli level %d (want 0-11)", l)
		}
		bw := brotli.NewWriterLevel(w, l)
		return &compressStream{bw, bw.Close}, nil
	case CompressionSnappy:
		// The snappy framing format (.sz), as Snappy itself and python-snappy read it.
		sw := s2.NewWriter(w, s2.WriterSnappyCompat(), s2.WriterConcurrency(1))
		return &compressStream{sw, sw.Close}, nil
	case CompressionLZ4:
		lw := lz4.NewWriter(w)
		lv := lz4.Fast
		if o.levelSet && o.level > 0 {
			if o.level > 9 {
				return nil, fmt.Errorf("encode: lz4 level %d (want 0-9)", o.level)
			}
			lv = lz4.CompressionLevel(1 << (8 + o.level))
		}
		if err := lw.Apply(lz4.CompressionLevelOption(lv), lz4.ConcurrencyOption(1)); err != nil {
			return nil, fmt.Errorf("encode: lz4: %w", err)
		}
		return &compressStream{lw, lw.Close}, nil
	}
	return nil, fmt.Errorf("%w compression %q", ErrUnsupported, compression)
}
