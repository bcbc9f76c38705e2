package encode

import (
	"fmt"
	"io"
	"slices"

	"github.com/sluicehq/sluice/abi"
)

// FormatPostHogBatch is the body of PostHog's POST /batch (ABI 1.1): one JSON object
// {"api_key": ..., "historical_migration": true, "batch": [event, ...]} with each event as
// PostHog's capture API takes it: {"uuid", "event", "distinct_id", "timestamp",
// "properties"}; a non-empty elements_chain travels as properties.$elements_chain (where
// capture reads it). It needs the event columns uuid, event, distinct_id, timestamp and
// properties; the spec's columns selection must be empty.
const FormatPostHogBatch = "posthog_batch"

// posthogEncoder writes FormatPostHogBatch through a jsonlEncoder's buffer and value
// formatting.
type posthogEncoder struct {
	j                                        *jsonlEncoder
	uuid, event, distinctID, ts, props, elem int // source columns; elem -1 when absent
	head                                     []byte
	started                                  bool
}

func newPostHogEncoder(dst io.Writer, cols []abi.Column, apiKey string, blocks *blockStream) (*posthogEncoder, error) {
	find := func(name string, kinds ...abi.Kind) (int, error) {
		i := slices.IndexFunc(cols, func(c abi.Column) bool { return c.Name == name })
		if i < 0 {
			return -1, fmt.Errorf("%w: format %s needs column %q", ErrSchema, FormatPostHogBatch, name)
		}
		if !slices.Contains(kinds, cols[i].Kind) {
			return -1, fmt.Errorf("%w: format %s: column %q is %s", ErrSchema, FormatPostHogBatch, name, cols[i].Kind)
		}
		return i, nil
	}
	e := &posthogEncoder{elem: -1}
	var err error
	for _, f := range []struct {
		dst   *int
		name  string
		kinds []abi.Kind
	}{
		{&e.uuid, "uuid", []abi.Kind{abi.KindUUID}},
		{&e.event, "event", []abi.Kind{abi.KindString}},
		{&e.distinctID, "distinct_id", []abi.Kind{abi.KindString}},
		{&e.ts, "timestamp", []abi.Kind{abi.KindTimestamp}},
		{&e.props, "properties", []abi.Kind{abi.KindJSON, abi.KindString}},
	} {
		if *f.dst, err = find(f.name, f.kinds...); err != nil {
			return nil, err
		}
	}
	if i, err := find("elements_chain", abi.KindString); err == nil {
		e.elem = i
	}
	all := make([]outCol, len(cols))
	for i, c := range cols {
		all[i] = outCol{src: i, name: c.Name, col: c}
	}
	e.j = newJSONLEncoder(dst, all, blocks)
	e.head = append([]byte(`{"api_key":`), appendJSONString(nil, []byte(apiKey))...)
	e.head = append(e.head, `,"historical_migration":true,"batch":[`...)
	return e, nil
}

func (e *posthogEncoder) writeRow(vals []abi.Value) error {
	b := e.j.out.buf
	if !e.started {
		b = append(b, e.head...)
		e.started = true
	} else {
		b = append(b, ',', '\n')
	}
	b = append(b, `{"uuid":`...)
	b = e.j.appendValue(b, abi.KindUUID, &vals[e.uuid])
	b = append(b, `,"event":`...)
	b = e.j.appendValue(b, abi.KindString, &vals[e.event])
	b = append(b, `,"distinct_id":`...)
	b = e.j.appendValue(b, abi.KindString, &vals[e.distinctID])
	b = append(b, `,"timestamp":`...)
	b = e.j.appendValue(b, abi.KindTimestamp, &vals[e.ts])
	b = append(b, `,"properties":`...)
	start := len(b)
	if p := &vals[e.props]; p.Null {
		b = append(b, '{', '}')
	} else {
		b = e.j.appendJSONText(b, p.Bytes)
	}
	if b[start] != '{' { // not an object: keep the text under a key, capture needs an object
		text := slices.Clone(b[start:])
		b = append(append(b[:start], `{"$properties":`...), text...)
		b = append(b, '}')
	}
	if e.elem >= 0 && !vals[e.elem].Null && len(vals[e.elem].Bytes) > 0 {
		// First, so a $elements_chain already in properties (later) wins.
		rest := slices.Clone(b[start+1:])
		b = append(b[:start+1], `"$elements_chain":`...)
		b = appendJSONString(b, vals[e.elem].Bytes)
		if len(rest) > 1 { // rest is `}` for an empty object
			b = append(b, ',')
		}
		b = append(b, rest...)
	}
	b = append(b, '}')
	e.j.out.buf = b
	return e.j.out.maybeFlush()
}

func (e *posthogEncoder) endBatch() error { return e.j.endBatch() }

func (e *posthogEncoder) close() error {
	if !e.started {
		e.j.out.buf = append(e.j.out.buf, e.head...)
	}
	e.j.out.buf = append(e.j.out.buf, ']', '}')
	return e.j.close()
}
