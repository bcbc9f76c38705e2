package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type noteArgs struct {
	Key  string `json:"key" river:"unique"`
	Body string `json:"body"`
}

func (noteArgs) Kind() string { return "test_note" }

type otherArgs struct{}

func (otherArgs) Kind() string { return "test_other" }

// An extra kind is worked on its own queue with its own attempts and backoff, beside the
// runs, unique by its tagged args; an undeclared kind is refused.
func TestExtraKind(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		var mu sync.Mutex
		tries := map[string][]Info{}
		kind := NewKind(KindConfig{Queue: "test_notes", Workers: 2, MaxAttempts: 3, RetryBase: 20 * time.Millisecond, RetryMax: 40 * time.Millisecond},
			func(ctx context.Context, a noteArgs) error {
				info, _ := JobInfo(ctx)
				mu.Lock()
				tries[a.Key] = append(tries[a.Key], info)
				n := len(tries[a.Key])
				mu.Unlock()
				switch {
				case a.Body == "flaky" && n < 3:
					return errors.New("receiver said 500")
				case a.Body == "never":
					return errors.New("receiver is down")
				case a.Body == "final":
					return Cancel(errors.New("receiver said 404"))
				}
				return nil
			})
		var runs calls
		cfg := b.config(func(ctx context.Context, j Job) error { runs.add(ctx, j); return nil })
		cfg.Kinds = []JobKind{kind}
		q := newQueue(t, cfg)
		start(t, q)

		for _, a := range []noteArgs{{"a", "ok"}, {"b", "flaky"}, {"c", "never"}, {"d", "final"}} {
			if ok, err := q.Insert(ctx, a, InsertOptions{}); err != nil || !ok {
				t.Fatalf("insert %v: inserted %v, %v", a, ok, err)
			}
		}
		// Unique by the tagged field, whatever the other fields say.
		if ok, err := q.Insert(ctx, noteArgs{"a", "other body"}, InsertOptions{}); err != nil || ok {
			t.Fatalf("duplicate insert: inserted %v, %v", ok, err)
		}
		if _, err := q.Insert(ctx, otherArgs{}, InsertOptions{}); err == nil || !strings.Contains(err.Error(), "not declared") {
			t.Fatalf("undeclared kind: %v", err)
		}
		enqueue(t, q, Job{RunID: "r1", ExportID: "e1", IntervalEnd: end0}, EnqueueOptions{})

		count := func(k string) int { mu.Lock(); defer mu.Unlock(); return len(tries[k]) }
		eventually(t, 20*time.Second, "the notes and the run", func() bool {
			return count("a") == 1 && count("b") == 3 && count("c") == 3 && count("d") == 1 && runs.n() == 1
		})
		time.Sleep(200 * time.Millisecond) // nothing more comes: attempts are bounded
		mu.Lock()
		defer mu.Unlock()
		if len(tries["c"]) != 3 || len(tries["d"]) != 1 || len(tries["a"]) != 1 {
			t.Fatalf("tries: a %d, c %d, d %d", len(tries["a"]), len(tries["c"]), len(tries["d"]))
		}
		for i, info := range tries["b"] {
			if info.Attempt != i+1 || info.MaxAttempts != 3 {
				t.Errorf("try %d of b: %+v", i, info)
			}
		}
		if b.queryInt(t, "SELECT COUNT(*) FROM river_job WHERE kind = 'test_note' AND queue = 'test_notes'") != 4 {
			t.Error("the notes are not on their own queue")
		}
	})
}

func TestKindConfigErrors(t *testing.T) {
	h := func(context.Context, noteArgs) error { return nil }
	for name, kinds := range map[string][]JobKind{
		"no queue":          {NewKind(KindConfig{}, h)},
		"the runs' queue":   {NewKind(KindConfig{Queue: QueueBackfill}, h)},
		"the default queue": {NewKind(KindConfig{Queue: "default"}, h)},
		"a kind twice":      {NewKind(KindConfig{Queue: "x"}, h), NewKind(KindConfig{Queue: "y"}, h)},
	} {
		if err := checkKinds(kinds); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkKinds([]JobKind{NewKind(KindConfig{Queue: "x"}, h)}); err != nil {
		t.Error(err)
	}
}
