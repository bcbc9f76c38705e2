package conformance

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/pierrec/lz4/v4"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/encode"
)

// The suite compares records by their uuid and these key fields (the event schema's names;
// an encoder spec may rename them in the output).
var keyFields = []string{"event", "distinct_id"}

// outRecord is one record read back from an object: its uuid (canonical text) and the
// key fields present in the output.
type outRecord struct {
	uuid   string
	fields map[string]string
}

// dataObject is a committed object the suite knows how to read.
type dataObject struct {
	Commit
	format      string // jsonl | csv | parquet
	compression string // stream compression: "" | gzip | zstd | brotli | snappy | lz4
	names       map[string]string
}

// classify decides whether a commit holds records and how to read it: by the host encoder
// the plugin opened on it, else by its content type, content encoding, key and first bytes.
// ok is false for an object that is not records in a format the suite reads (a manifest, a
// posthog_batch body); why says so.
func classifyCommit(c Commit) (o dataObject, ok bool, why string) {
	o = dataObject{Commit: c, names: map[string]string{}}
	for _, f := range append([]string{"uuid"}, keyFields...) {
		o.names[f] = f
	}
	if len(c.Encoders) > 0 {
		spec := c.Encoders[0]
		if !slices.Contains(encode.Formats(), spec.Format) {
			return o, false, fmt.Sprintf("host encoder format %q", spec.Format)
		}
		o.format = spec.Format
		if spec.Format != encode.FormatParquet && spec.Compression != "none" {
			o.compression = spec.Compression
		}
		if len(spec.Columns) > 0 {
			for k := range o.names {
				delete(o.names, k)
			}
			for _, cs := range spec.Columns {
				name := cs.As
				if name == "" {
					name = cs.Name
				}
				o.names[cs.Name] = name
			}
		}
		return o, true, ""
	}
	// Bytes the plugin wrote itself.
	o.compression = sniffCompression(c.Data, c.Options.ContentEncoding, c.Key)
	key := c.Key
	for _, ext := range []string{".gz", ".zst", ".br", ".sz", ".lz4", ".snappy"} {
		key = strings.TrimSuffix(key, ext)
	}
	ct, _, _ := strings.Cut(strings.ToLower(c.Options.ContentType), ";")
	switch {
	case bytes.HasPrefix(c.Data, []byte("PAR1")):
		o.format, o.compression = encode.FormatParquet, ""
	case ct == "application/jsonl" || ct == "application/x-ndjson" || ct == "application/x-jsonlines" ||
		ct == "application/jsonlines" || path.Ext(key) == ".jsonl" || path.Ext(key) == ".ndjson":
		o.format = encode.FormatJSONL
	case ct == "text/csv" || path.Ext(key) == ".csv":
		o.format = encode.FormatCSV
	default:
		return o, false, fmt.Sprintf("content type %q", c.Options.ContentType)
	}
	return o, true, ""
}

func sniffCompression(b []byte, contentEncoding, key string) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return encode.CompressionGzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return encode.CompressionZstd
	case bytes.HasPrefix(b, []byte{0x04, 0x22, 0x4d, 0x18}):
		return encode.CompressionLZ4
	case bytes.HasPrefix(b, []byte("\xff\x06\x00\x00sNaPpY")):
		return encode.CompressionSnappy
	case contentEncoding == "br" || strings.HasSuffix(key, ".br"):
		return encode.CompressionBrotli
	}
	return ""
}

func decompress(b []byte, compression string) (io.Reader, error) {
	src := bytes.NewReader(b)
	switch compression {
	case "":
		return src, nil
	case encode.CompressionGzip:
		return gzip.NewReader(src) // reads concatenated members
	case encode.CompressionZstd:
		d, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case encode.CompressionBrotli:
		return brotli.NewReader(src), nil
	case encode.CompressionSnappy:
		return s2.NewReader(src), nil
	case encode.CompressionLZ4:
		return lz4.NewReader(src), nil
	}
	return nil, fmt.Errorf("compression %q", compression)
}

// records reads an object's records back. A decoder's panic on bytes it cannot read is an
// error: the suite never panics on what a plugin wrote.
func (o dataObject) records() (recs []outRecord, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable %s: %v", o.format, p)
		}
	}()
	if o.format == encode.FormatParquet {
		return o.parquetRecords()
	}
	r, err := decompress(o.Data, o.compression)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.compression, err)
	}
	if o.format == encode.FormatCSV {
		return o.csvRecords(r)
	}
	var out []outRecord
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var m map[string]any
			if jerr := json.Unmarshal(b, &m); jerr != nil {
				return out, fmt.Errorf("line %d is not a JSON object: %w", line, jerr)
			}
			rec := outRecord{fields: map[string]string{}}
			for src, name := range o.names {
				if v, ok := m[name]; ok {
					s, _ := v.(string)
					rec.set(src, s)
				}
			}
			out = append(out, rec)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("line %d: %w", line, err)
		}
	}
}

func (rec *outRecord) set(src, v string) {
	if src == "uuid" {
		rec.uuid = strings.ToLower(v)
		return
	}
	if slices.Contains(keyFields, src) {
		rec.fields[src] = v
	}
}

func (o dataObject) csvRecords(r io.Reader) ([]outRecord, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	idx := map[string]int{}
	for src, name := range o.names {
		if i := slices.Index(header, name); i >= 0 {
			idx[src] = i
		}
	}
	var out []outRecord
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("csv: %w", err)
		}
		rec := outRecord{fields: map[string]string{}}
		for src, i := range idx {
			rec.set(src, row[i])
		}
		out = append(out, rec)
	}
}

func (o dataObject) parquetRecords() ([]outRecord, error) {
	f, err := parquet.OpenFile(bytes.NewReader(o.Data), int64(len(o.Data)))
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	idx := map[string]int{} // source column name -> leaf column index
	for src, name := range o.names {
		if leaf, ok := f.Schema().Lookup(name); ok {
			idx[src] = leaf.ColumnIndex
		}
	}
	rd := parquet.NewReader(f)
	defer rd.Close()
	var out []outRecord
	buf := make([]parquet.Row, 256)
	for {
		n, err := rd.ReadRows(buf)
		for _, row := range buf[:n] {
			rec := outRecord{fields: map[string]string{}}
			for _, v := range row {
				for src, i := range idx {
					if v.Column() != i || v.IsNull() {
						continue
					}
					switch v.Kind() {
					case parquet.FixedLenByteArray, parquet.ByteArray:
						if s := v.ByteArray(); src == "uuid" && len(s) == 16 {
							rec.set(src, uuidText(s))
						} else {
							rec.set(src, string(s))
						}
					default:
						rec.set(src, v.String())
					}
				}
			}
			out = append(out, rec)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("parquet: %w", err)
		}
	}
}

func uuidText(u []byte) string {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:16])
	return string(s[:])
}

// maxListed bounds the uuids a failure names.
const maxListed = 5

// compareOutput reads back every record object committed by a run and compares the records
// with the events sent, by uuid and key fields: each event exactly once, nothing else.
// compared is false (why says why) when no committed object holds records the suite reads.
func compareOutput(commits []Commit, sent []abi.Event) (msg string, compared bool, err error) {
	var objs []dataObject
	var others []string
	for _, c := range commits {
		o, ok, why := classifyCommit(c)
		if !ok {
			others = append(others, fmt.Sprintf("%s (%s)", c.Key, why))
			continue
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		if len(commits) == 0 {
			return "no object committed", false, nil
		}
		return "no object in a format the suite reads: " + strings.Join(others, ", "), false, nil
	}
	want := make(map[string]int, len(sent))
	for i := range sent {
		want[uuidText(sent[i].UUID[:])] = i
	}
	seen := make(map[string]int, len(sent))
	var unexpected, mismatched []string
	total, noUUID := 0, 0
	for _, o := range objs {
		recs, err := o.records()
		if err != nil {
			return "", true, fmt.Errorf("object %s (%s%s): %w", o.Key, o.format, plusCompression(o.compression), err)
		}
		for _, r := range recs {
			total++
			if r.uuid == "" {
				noUUID++
				continue
			}
			i, ok := want[r.uuid]
			if !ok {
				unexpected = append(unexpected, r.uuid)
				continue
			}
			seen[r.uuid]++
			e := &sent[i]
			for _, k := range keyFields {
				got, ok := r.fields[k]
				if exp := map[string]string{"event": e.Event, "distinct_id": e.DistinctID}[k]; ok && got != exp {
					mismatched = append(mismatched, fmt.Sprintf("%s %s %q, sent %q", r.uuid, k, got, exp))
				}
			}
		}
	}
	var probs []string
	if noUUID > 0 {
		// No uuid column to compare by: only the count can be checked.
		if noUUID == total && total == len(sent) {
			return fmt.Sprintf("%d records in %d objects (no uuid column: counted only)", total, len(objs)), true, nil
		}
		probs = append(probs, fmt.Sprintf("%d records without a uuid", noUUID))
	}
	var missing, doubled []string
	for i := range sent {
		u := uuidText(sent[i].UUID[:])
		switch n := seen[u]; {
		case n == 0:
			missing = append(missing, u)
		case n > 1:
			doubled = append(doubled, fmt.Sprintf("%s x%d", u, n))
		}
	}
	if len(missing) > 0 {
		probs = append(probs, fmt.Sprintf("%d of %d records missing (%s)", len(missing), len(sent), firstFew(missing)))
	}
	if len(doubled) > 0 {
		probs = append(probs, fmt.Sprintf("%d records written more than once (%s)", len(doubled), firstFew(doubled)))
	}
	if len(unexpected) > 0 {
		probs = append(probs, fmt.Sprintf("%d records never sent (%s)", len(unexpected), firstFew(unexpected)))
	}
	if len(mismatched) > 0 {
		probs = append(probs, fmt.Sprintf("%d key fields differ (%s)", len(mismatched), firstFew(mismatched)))
	}
	if len(probs) > 0 {
		return "", true, fmt.Errorf("wrote %d records for %d sent: %s", total, len(sent), strings.Join(probs, "; "))
	}
	formats := map[string]bool{}
	for _, o := range objs {
		formats[o.format+plusCompression(o.compression)] = true
	}
	msg = fmt.Sprintf("%d records in %d objects (%s), each sent record once", total, len(objs), strings.Join(sortedKeys(formats), ", "))
	if len(others) > 0 {
		msg += "; not read: " + strings.Join(others, ", ")
	}
	return msg, true, nil
}

func plusCompression(c string) string {
	if c == "" {
		return ""
	}
	return "+" + c
}

func firstFew(l []string) string {
	if len(l) <= maxListed {
		return strings.Join(l, ", ")
	}
	return strings.Join(l[:maxListed], ", ") + fmt.Sprintf(", ... %d more", len(l)-maxListed)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// outputStep compares what a run committed to the memory store with the events it was
// sent. A plugin that writes elsewhere (a warehouse, an HTTP endpoint) is skipped, saying
// so; one that declares formats yet commits nothing readable fails.
func (r *runner) outputStep(name string, m abi.Manifest, commits []Commit, sent []abi.Event) {
	msg, compared, err := compareOutput(commits, sent)
	if compared || err != nil {
		r.step(name, func() (string, error) { return msg, err })
		return
	}
	var elsewhere []string
	for _, c := range m.Capabilities {
		if c == abi.CapBigQuery || c == abi.CapSnowflake || c == abi.CapHTTP || c == abi.CapSQL {
			elsewhere = append(elsewhere, c)
		}
	}
	switch {
	case len(elsewhere) > 0:
		r.skip(name, fmt.Sprintf("not compared: the plugin writes through %s, not the memory object store (%s)", strings.Join(elsewhere, ", "), msg))
	case len(m.Formats) == 0:
		r.skip(name, fmt.Sprintf("not compared: the manifest declares no formats (%s)", msg))
	default:
		r.step(name, func() (string, error) {
			return "", fmt.Errorf("the manifest declares formats %v, but %s for %d records sent", m.Formats, msg, len(sent))
		})
	}
}
