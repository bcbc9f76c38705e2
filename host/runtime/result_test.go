package runtime_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluicehq/sluice/host/runtime"
)

// A plugin's own count of records, 0 included, is told apart from a result that gives
// none: the host records the first as is and the streamed count for the second.
func TestFinishRecordsReported(t *testing.T) {
	rt := newRuntime(t, runtime.Config{})
	ctx := context.Background()
	good := wasm(t, "good") // finishes with {"records":0,"bytes":0} whatever it was given
	silent := bytes.Replace(good, []byte(`{"records":0,"bytes":0}`), []byte(`{"bytes":0,"counted":0}`), 1)
	if bytes.Equal(silent, good) {
		t.Fatal("good.wasm no longer holds its finish document")
	}
	for _, tc := range []struct {
		name     string
		module   []byte
		reported bool
	}{
		{"records 0 given", good, true},
		{"records key absent", silent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := rt.Load(ctx, tc.module, nil, runtime.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := p.Open(ctx, openReq("r"), runtime.Bindings{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(ctx)
			if err := s.WriteBatch(ctx, smallBatch, 3); err != nil {
				t.Fatal(err)
			}
			res, err := s.Finish(ctx)
			if err != nil || res.Records != 0 || res.RecordsReported != tc.reported {
				t.Fatalf("finish = %+v, %v; want 0 records, reported %t", res, err, tc.reported)
			}
		})
	}
}
