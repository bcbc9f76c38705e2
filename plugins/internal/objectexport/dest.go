package objectexport

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// MaxPartitions is the number of distinct event names one partitioned run may write: one
// open upload per event name, and the host allows 16 open uploads per run (SPEC section 11).
const MaxPartitions = 16

// Plugin is what one object destination adds to the shared write loop.
type Plugin struct {
	// Name is the destination's name in run logs ("s3").
	Name string
	// Store names what holds the files in messages: "bucket" or "container".
	Store string
	// Decode reads the plugin's config with decode (sdk.Config.Decode or
	// sdk.RunContext.Config), applies the plugin's own checks and returns the shared options,
	// not yet checked. nil decodes the config into Options.
	Decode func(decode func(any) error) (Options, error)
	// Secrets checks which secret fields are set, at validation; nil accepts any.
	Secrets func(c *sdk.Config) error
	// Codes are the store's error codes, for Classify.
	Codes sdk.ErrorCodes
}

// Destination is an object destination: embed it, set P, and register it.
type Destination struct {
	sdk.Base
	P *Plugin

	opts     Options
	spec     abi.EncoderSpec
	start    time.Time
	end      time.Time
	split    bool
	maxBytes int64
	eventCol int                 // index of the event column, when partitioned
	sets     map[string]*fileSet // by event name; "" when not partitioned
	order    []string            // event names, first seen first
	records  int64
	bytes    int64
	files    int64
	outputs  []abi.Output
	seen     []string // per batch: event names, first seen first
	counts   []int64  // per batch: records of each name in seen
}

// fileSet is the files of one prefix: one file, or split files and their manifest.
type fileSet struct {
	event    string
	prefix   string
	spec     abi.EncoderSpec
	n        int // index of the open (or next) file
	up       *sdk.Upload
	enc      *sdk.Encoder
	fileRecs int64
	keys     []string
}

// Register registers an object destination: the manifest, and the shared loop driven by p.
func Register(m abi.Manifest, p *Plugin) {
	sdk.Register(m, func() sdk.Destination { return &Destination{P: p} })
}

func (d *Destination) decode(decode func(any) error) error {
	var opts Options
	var err error
	if d.P.Decode != nil {
		opts, err = d.P.Decode(decode)
	} else {
		err = decode(&opts)
	}
	if err != nil {
		return err
	}
	if err := opts.Check(); err != nil {
		return err
	}
	d.opts = opts
	return nil
}

// Validate checks the config and the plugin's secret rules.
func (d *Destination) Validate(c *sdk.Config) error {
	if err := d.decode(c.Decode); err != nil {
		return err
	}
	if d.P.Secrets != nil {
		return d.P.Secrets(c)
	}
	return nil
}

// Open checks the config against the run and renders the prefix.
func (d *Destination) Open(rc *sdk.RunContext) error {
	if err := d.decode(rc.Config); err != nil {
		return err
	}
	spec, err := d.opts.EncoderSpec(rc.Columns)
	if err != nil {
		return err
	}
	d.spec = spec
	d.start, d.end = rc.IntervalStart, rc.IntervalEnd
	d.split = d.opts.MaxFileSizeMB > 0
	d.maxBytes = d.opts.MaxFileSizeMB << 20
	d.sets = map[string]*fileSet{}
	prefix := d.opts.Prefix
	if d.opts.PartitionBy == PartitionEvent {
		d.eventCol = slices.IndexFunc(rc.Columns, func(c abi.Column) bool { return c.Name == "event" })
		if d.eventCol < 0 || rc.Columns[d.eventCol].Kind != abi.KindString || rc.Columns[d.eventCol].Nullable {
			return sdk.FieldError("partition_by", "partition_by: event needs a non-null string column named event; this export's schema has none")
		}
		if err := probeRowFilter(); err != nil {
			return err
		}
	} else {
		set, err := d.newSet("")
		if err != nil {
			return err
		}
		prefix = set.prefix
	}
	sdk.Log(slog.LevelInfo, d.P.Name+" export starting", "prefix", prefix, "format", d.opts.FileFormat,
		"compression", d.opts.Compression, "attempt", rc.Attempt)
	return nil
}

// newSet renders the prefix of one file set and registers it.
func (d *Destination) newSet(event string) (*fileSet, error) {
	prefix, err := d.opts.RenderPrefix(d.start, d.end, event)
	if err != nil {
		return nil, sdk.FieldError("prefix", "%v", err)
	}
	set := &fileSet{event: event, prefix: prefix, spec: d.spec}
	if d.opts.PartitionBy == PartitionEvent {
		set.spec.Where = &abi.RowFilter{Column: "event", Equals: event}
	}
	d.sets[event] = set
	d.order = append(d.order, event)
	return set, nil
}

// probeRowFilter makes sure the host applies EncoderSpec.Where: a host that predates it
// ignores the key (unknown JSON keys are ignored) and would write every event into every
// partition. The probe asks for a filter on a column that does not exist: a host that knows
// Where refuses it with bad_argument; one that accepts it does not know the key.
func probeRowFilter() error {
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: ".sluice-probe", ContentType: "application/octet-stream"})
	if err != nil {
		return err
	}
	defer up.Abort()
	enc, err := up.Encoder(abi.EncoderSpec{Format: "jsonl", Where: &abi.RowFilter{Column: "\x00no such column", Equals: ""}})
	if err == nil {
		enc.Close()
		return sdk.FieldError("partition_by", "this host does not filter encoder rows (EncoderSpec.where): partition_by: event needs a newer Sluice host")
	}
	if !sdk.IsStatus(err, abi.StatusBadArgument) {
		return err
	}
	return nil
}

// openFile starts the set's next data file and its host encoder.
func (d *Destination) openFile(s *fileSet) error {
	n := -1
	if d.split {
		n = s.n
	}
	key := d.opts.FileKey(s.prefix, d.start, d.end, n)
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: key, ContentType: ContentType(d.opts.FileFormat)})
	if err != nil {
		return err
	}
	enc, err := up.Encoder(s.spec)
	if err != nil {
		up.Abort()
		return err
	}
	s.up, s.enc, s.fileRecs = up, enc, 0
	return nil
}

// commitFile completes the set's open data file.
func (d *Destination) commitFile(s *fileSet) error {
	ci, err := s.up.Commit()
	s.up, s.enc = nil, nil
	if err != nil {
		return err
	}
	d.bytes += ci.Bytes
	d.files++
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: ci.Key, Records: s.fileRecs, Bytes: ci.Bytes})
	s.keys = append(s.keys, ci.Key)
	s.n++
	return nil
}

// write encodes a batch into the set's file (records of them are the set's), then
// commits the file when it reached max_file_size_mb.
func (d *Destination) write(s *fileSet, b *sdk.Batch, records int64) error {
	if s.up == nil {
		if err := d.openFile(s); err != nil {
			return err
		}
	}
	if err := s.enc.WriteBatch(b); err != nil {
		return err
	}
	s.fileRecs += records
	if d.split {
		if n := s.up.Bytes(); n >= d.maxBytes {
			return d.commitFile(s) // the next batch opens file n+1
		}
	}
	return nil
}

// WriteBatch hands the batch to the host encoder of its file set. Partitioned by event, the
// plugin reads the batch's event column to learn which names it holds, then gives the
// batch to the encoder of each of those names, which keeps only its own rows.
func (d *Destination) WriteBatch(b *sdk.Batch) error {
	if b.Records() == 0 {
		return nil
	}
	d.records += int64(b.Records())
	if d.opts.PartitionBy != PartitionEvent {
		return d.write(d.sets[""], b, int64(b.Records()))
	}
	// Names seen in this batch and their counts: a linear search over at most MaxPartitions
	// names (plus one) beats hashing every row's name in a guest.
	d.seen, d.counts = d.seen[:0], d.counts[:0]
	raw, err := b.Bytes()
	if err != nil {
		return err
	}
	err = eventNames(raw, d.eventCol, func(name []byte) {
		for i, s := range d.seen {
			if s == string(name) { // no allocation
				d.counts[i]++
				return
			}
		}
		d.seen = append(d.seen, string(name))
		d.counts = append(d.counts, 1)
	})
	if err != nil {
		return err
	}
	for i, ev := range d.seen {
		s := d.sets[ev]
		if s == nil {
			if len(d.sets) >= MaxPartitions {
				return sdk.FieldError("partition_by", "partition_by: event writes at most %d distinct event names per run "+
					"(one open file each) and this interval has more (%q is number %d): narrow the export with "+
					"include_events or exclude_events, or export without partition_by", MaxPartitions, ev, MaxPartitions+1)
			}
			var err error
			if s, err = d.newSet(ev); err != nil {
				return err
			}
		}
		if err := d.write(s, b, d.counts[i]); err != nil {
			return fmt.Errorf("event %q: %w", ev, err)
		}
	}
	return nil
}

// Finish commits every open file, then writes each split set's manifest.
func (d *Destination) Finish() (abi.Result, error) {
	for _, ev := range d.order {
		if s := d.sets[ev]; s.up != nil {
			if err := d.commitFile(s); err != nil {
				return abi.Result{}, err
			}
		}
	}
	if d.split {
		for _, ev := range d.order {
			if err := d.writeManifest(d.sets[ev]); err != nil {
				return abi.Result{}, err
			}
		}
	}
	if d.records == 0 {
		sdk.Log(slog.LevelInfo, "no events in the interval: no data file written")
	}
	if d.opts.PartitionBy == PartitionEvent {
		_ = sdk.Metric("partitions_written", int64(len(d.order)))
	}
	_ = sdk.Metric("files_written", d.files)
	return abi.Result{Records: d.records, Bytes: d.bytes, Outputs: d.outputs}, nil
}

// writeManifest writes {prefix}/{start}-{end}_manifest.json: {"files": [keys...]}, the
// keys as the host committed them (relative to the bucket or container).
func (d *Destination) writeManifest(s *fileSet) error {
	files := s.keys
	if files == nil {
		files = []string{}
	}
	body, err := json.Marshal(struct {
		Files []string `json:"files"`
	}{files})
	if err != nil {
		return err
	}
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: ManifestKey(s.prefix, d.start, d.end), ContentType: "application/json"})
	if err != nil {
		return err
	}
	if _, err := up.Write(body); err != nil {
		up.Abort()
		return err
	}
	ci, err := up.Commit()
	if err != nil {
		return err
	}
	d.bytes += ci.Bytes
	d.outputs = append(d.outputs, abi.Output{Kind: "object", Name: ci.Key, Bytes: ci.Bytes})
	return nil
}

// Classify decides with the store's codes first (listed codes and bad config fields), then
// sdk.DefaultClassify.
func (d *Destination) Classify(e *abi.Error, attempt int) abi.Classification {
	if d.P != nil {
		if c, ok := d.P.Codes.Classify(e); ok {
			return c
		}
	}
	return sdk.DefaultClassify(e, attempt)
}

// Test checks the config, renders a key, and checks write access without leaving data: the
// object capability's check operation when the host has one, else an upload that is
// opened, written and aborted.
func (d *Destination) Test(rc *sdk.RunContext) (abi.TestReport, error) {
	var t sdk.TestSteps
	step := t.Step
	if !step("config", d.Open(rc), "config is valid") {
		return t.Report, nil
	}
	n := -1
	if d.split {
		n = 0
	}
	var prefix string
	if d.opts.PartitionBy == PartitionEvent {
		prefix, _ = d.opts.RenderPrefix(d.start, d.end, "$pageview") // rendered by Check already
		step("object key", nil, "files of this interval would be written as "+d.opts.FileKey(prefix, d.start, d.end, n)+
			" (for the event $pageview)")
		prefix, _ = d.opts.RenderPrefix(d.start, d.end, ".sluice-test")
	} else {
		prefix = d.sets[""].prefix
		step("object key", nil, "files of this interval would be written as "+d.opts.FileKey(prefix, d.start, d.end, n))
	}
	access := d.P.Store + " access"
	var resp map[string]any
	err := sdk.Call(abi.CapObject, map[string]string{"op": "check"}, &resp)
	if err == nil {
		step(access, nil, "the host checked the "+d.P.Store+" and credentials")
		return t.Report, nil
	}
	if !sdk.IsStatus(err, abi.StatusUnimplemented) {
		step(access, err, "")
		return t.Report, nil
	}
	probe := JoinKey(prefix, ".sluice-test-"+rc.RunID)
	up, err := sdk.OpenUpload(abi.UploadSpec{Key: probe, ContentType: "text/plain"})
	if err == nil {
		_, err = up.Write([]byte("sluice destination test\n"))
		if aerr := up.Abort(); err == nil {
			err = aerr
		}
	}
	step(access, err, "opened, wrote and aborted an upload at "+probe+" (nothing was kept)")
	return t.Report, nil
}
