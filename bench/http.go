package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
	"github.com/sluicehq/sluice/host/httpcap"
	"github.com/sluicehq/sluice/host/runtime"
)

// The http destination's benchmark: events/s delivered by plugins/http (posthog mode, gzip,
// batch_size events per request) to a loopback receiver that reads and discards every body,
// side by side with the same requests made natively (encode's posthog_batch into a buffer,
// net/http, the same client settings), so the ratio isolates what the plugin and the
// capability cost.

// HTTPReceiver is a loopback server that reads every request body, discards it and answers
// 200 {"status":1}, counting requests and bytes.
type HTTPReceiver struct {
	*httptest.Server
	Requests, Bytes atomic.Int64
}

// NewHTTPReceiver starts a receiver; Close stops it.
func NewHTTPReceiver() *HTTPReceiver {
	r := &HTTPReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n, _ := io.Copy(io.Discard, req.Body)
		r.Requests.Add(1)
		r.Bytes.Add(n)
		_, _ = io.WriteString(w, `{"status":1}`)
	}))
	return r
}

// HTTPPluginPath is bin/plugins/http.wasm next to the s3 plugin PluginPath finds.
func HTTPPluginPath() (string, error) {
	s3, err := PluginPath()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(s3), "http.wasm")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (run `make plugins`)", p)
	}
	return p, nil
}

// LoadHTTPWASM loads the http plugin with the http capability granted.
func LoadHTTPWASM(ctx context.Context, path string) (*WASM, error) {
	return loadWASM(ctx, path, abi.CapHTTP)
}

const httpBenchKey = "phc_bench"

// RunHTTP exports d through the plugin to url: batchSize events per request.
func (w *WASM) RunHTTP(ctx context.Context, url string, batchSize int, d *Data) (Result, error) {
	hb, err := httpcap.Bind(httpcap.Config{AllowPrivate: true}, map[string]string{"base_url": url, "secret_token": httpBenchKey})
	if err != nil {
		return Result{}, err
	}
	defer hb.Close()
	bind := runtime.Bindings{HTTP: hb, Sinks: map[string]runtime.ObjectStore{abi.SinkHTTPBody: hb.Sink()},
		Encoders: func(wr io.Writer, spec abi.EncoderSpec, cols []abi.Column) (runtime.BatchEncoder, error) {
			opts, err := httpcap.EncodeOptions(wr, spec)
			if err != nil {
				return nil, err
			}
			return encode.New(wr, spec, cols, opts...)
		}}
	cfg := map[string]any{"url": url, "mode": "posthog", "batch_size": float64(batchSize), "compression": "gzip",
		"max_retry_after_wait_seconds": float64(10), "request_timeout_seconds": float64(30)} // the manifest's defaults
	t0 := time.Now()
	req := abi.OpenRequest{RunID: benchRunID, ExportID: benchExportID, ExportName: "bench",
		IntervalStart: IntervalStart, IntervalEnd: IntervalEnd, Attempt: 1, Config: cfg, Columns: abi.EventColumns}
	s, err := w.Plugin.Open(ctx, req, bind)
	if err != nil {
		return Result{}, err
	}
	defer s.Close(ctx)
	if err := d.Each(func(b []byte, rows int) error { return s.WriteBatch(ctx, b, rows) }); err != nil {
		return Result{}, err
	}
	res, err := s.Finish(ctx)
	if err != nil {
		return Result{}, err
	}
	return Result{Records: res.Records, Written: res.Bytes, Duration: time.Since(t0)}, nil
}

// RunHTTPNative makes the same requests from Go: each batch cut into batchSize rows,
// encoded as posthog_batch + gzip into a buffer, POSTed with one keep-alive client.
func RunHTTPNative(ctx context.Context, url string, batchSize int, d *Data) (Result, error) {
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, DisableCompression: true}}
	defer client.CloseIdleConnections()
	t0 := time.Now()
	var res Result
	var buf bytes.Buffer
	var enc *encode.Encoder
	in := 0
	send := func() error {
		if err := enc.Close(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf.Bytes()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		res.Records += int64(in)
		res.Written += int64(buf.Len())
		enc, in = nil, 0
		return nil
	}
	err := d.Each(func(b []byte, rows int) error {
		offs, err := abi.RowOffsets(b)
		if err != nil {
			return err
		}
		for pos := 0; pos < rows; {
			if enc == nil {
				buf.Reset()
				if enc, err = encode.New(&buf, abi.EncoderSpec{Format: encode.FormatPostHogBatch, Compression: "gzip"},
					abi.EventColumns, encode.APIKey(httpBenchKey)); err != nil {
					return err
				}
			}
			take := min(rows-pos, batchSize-in)
			sub, err := abi.SliceBatch(b, offs, pos, take)
			if err != nil {
				return err
			}
			if _, err := enc.WriteBatch(sub); err != nil {
				return err
			}
			pos, in = pos+take, in+take
			if in == batchSize {
				if err := send(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil && enc != nil {
		err = send()
	}
	res.Duration = time.Since(t0)
	return res, err
}
