package chaos

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
)

// Seed writes perInterval events into each hourly interval ending at ends (inserted_at
// spread over the interval, whole seconds), through the same writer capture uses. pad > 0
// adds a property of that many random hex characters to each event (big, poorly
// compressible objects: multipart uploads).
func Seed(ctx context.Context, env *Env, ends []time.Time, interval time.Duration, perInterval, pad int) (int, error) {
	ch, err := source.NewClickHouse(ctx, source.ClickHouseConfig{DSN: env.CHDSN})
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	total := 0
	batch := make([]abi.Event, 0, 10_000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := ch.Insert(ctx, batch)
		total += len(batch)
		batch = batch[:0]
		return err
	}
	for _, end := range ends {
		start := end.Add(-interval)
		for i := 0; i < perInterval; i++ {
			ins := start.Add(time.Duration(rand.Int64N(int64(interval)))).Truncate(time.Second)
			created := ins
			props := fmt.Sprintf(`{"n":%d,"$current_url":"https://example.com/seed"}`, i)
			if pad > 0 {
				b := make([]byte, pad/2)
				for j := range b {
					b[j] = byte(rand.IntN(256))
				}
				props = fmt.Sprintf(`{"n":%d,"$current_url":"https://example.com/seed","pad":"%x"}`, i, b)
			}
			batch = append(batch, abi.Event{UUID: [16]byte(uuid.New()), Event: "$pageview",
				DistinctID: fmt.Sprintf("seed-user-%d", i%113), TeamID: 1,
				Properties: props,
				Timestamp:  ins.Add(-time.Duration(rand.IntN(5)) * time.Second), CreatedAt: &created, InsertedAt: ins})
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	return total, flush()
}

// SourceRows reads every (uuid, inserted_at) of the source table.
func SourceRows(ctx context.Context, env *Env) (map[uuid.UUID][]time.Time, error) {
	rows, err := env.CH.Query(ctx, "SELECT uuid, assumeNotNull(inserted_at) FROM "+env.Name+".events")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uuid.UUID][]time.Time{}
	for rows.Next() {
		var id uuid.UUID
		var ins time.Time
		if err := rows.Scan(&id, &ins); err != nil {
			return nil, err
		}
		out[id] = append(out[id], ins.UTC())
	}
	return out, rows.Err()
}

// Object is one exported file, read back and decoded.
type Object struct {
	Key        string
	Start, End time.Time
	UUIDs      []uuid.UUID
}

// ReadObjects lists every object under prefix/ and decodes its gzip JSON Lines rows.
func ReadObjects(ctx context.Context, env *Env, prefix string) ([]Object, error) {
	var out []Object
	var token *string
	p := prefix + "/"
	for {
		page, err := env.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &env.Bucket, Prefix: &p, ContinuationToken: token})
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			obj, err := readObject(ctx, env, *o.Key, p)
			if err != nil {
				return nil, err
			}
			out = append(out, obj)
		}
		if page.NextContinuationToken == nil {
			break
		}
		token = page.NextContinuationToken
	}
	return out, nil
}

func readObject(ctx context.Context, env *Env, key, prefix string) (Object, error) {
	o := Object{Key: key}
	// <prefix>/<start>-<end>.jsonl.gz, times like 2026-12-03T10:00:00+00:00
	name := strings.TrimSuffix(strings.TrimPrefix(key, prefix), ".jsonl.gz")
	parts := strings.SplitN(name, "+00:00-", 2)
	var err1, err2 error
	if len(parts) == 2 {
		o.Start, err1 = time.Parse("2006-01-02T15:04:05", parts[0])
		o.End, err2 = time.Parse("2006-01-02T15:04:05", strings.TrimSuffix(parts[1], "+00:00"))
	}
	if len(parts) != 2 || err1 != nil || err2 != nil {
		return o, fmt.Errorf("object key %q does not name an interval", key)
	}
	got, err := env.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &env.Bucket, Key: &key})
	if err != nil {
		return o, err
	}
	data, err := io.ReadAll(got.Body)
	got.Body.Close()
	if err != nil {
		return o, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return o, fmt.Errorf("%s: %w", key, err)
	}
	dec := json.NewDecoder(zr)
	for {
		var row struct {
			UUID string `json:"uuid"`
		}
		if err := dec.Decode(&row); err == io.EOF {
			return o, nil
		} else if err != nil {
			return o, fmt.Errorf("%s: row %d: %w", key, len(o.UUIDs), err)
		}
		id, err := uuid.Parse(row.UUID)
		if err != nil {
			return o, fmt.Errorf("%s: row %d: %w", key, len(o.UUIDs), err)
		}
		o.UUIDs = append(o.UUIDs, id)
	}
}

// ExportCheck is the verdict on one export.
type ExportCheck struct {
	Name            string
	Intervals       int      // intervals expected
	Runs            int      // runs found
	Completed       int      // runs Completed
	NotCompleted    []string // runs of expected intervals not Completed (status, error)
	Unfinished      int      // runs Starting, Running or FailedRetryable at the end
	Missing         int      // expected intervals without a run
	Extra           int      // runs of intervals not expected
	RetriedAttempts int      // sum over runs of attempt - 1
	MaxAttempt      int
	Events          int // (event, interval) pairs in the source, for the expected intervals
	Exported        int // rows in the objects
	Lost            int // source rows of an expected interval missing from its object
	Doubled         int // rows beyond the first of the same uuid in the same interval, or in an unexpected interval
	RecordsMismatch []string
	Objects         int
	CompletedLogs   map[string]int // runs with more than one "completed:" log line: run id -> lines
}

// OK reports whether the export passed every check.
func (c ExportCheck) OK() bool {
	return len(c.NotCompleted) == 0 && c.Unfinished == 0 && c.Missing == 0 && c.Extra == 0 &&
		c.Lost == 0 && c.Doubled == 0 && len(c.RecordsMismatch) == 0
}

// CheckExport compares an export's runs and objects with the source: every interval end in
// ends has exactly one run, Completed, whose records_completed is the source's count for
// the interval; the objects hold every source row of each interval once.
func CheckExport(ctx context.Context, c *Client, env *Env, name, exportID, prefix string, ends []time.Time,
	interval time.Duration, src map[uuid.UUID][]time.Time) (ExportCheck, error) {
	res := ExportCheck{Name: name, Intervals: len(ends), CompletedLogs: map[string]int{}}
	runs, err := c.Runs(ctx, exportID)
	if err != nil {
		return res, err
	}
	res.Runs = len(runs)
	want := map[time.Time]bool{}
	for _, e := range ends {
		want[e.UTC()] = true
	}
	byEnd := map[time.Time]APIRun{}
	for _, r := range runs {
		end := r.IntervalEnd.UTC()
		if _, dup := byEnd[end]; dup {
			res.Extra++ // storage keeps one run per interval: never expected
		}
		byEnd[end] = r
		if r.Attempt > 1 {
			res.RetriedAttempts += r.Attempt - 1
		}
		res.MaxAttempt = max(res.MaxAttempt, r.Attempt)
		switch r.Status {
		case "Starting", "Running", "FailedRetryable":
			res.Unfinished++
		}
		if !want[end] {
			res.Extra++
		}
	}
	// Expected rows per interval end, from the source.
	expected := map[time.Time]map[uuid.UUID]bool{}
	for _, e := range ends {
		expected[e.UTC()] = map[uuid.UUID]bool{}
	}
	for id, times := range src {
		for _, ins := range times {
			for _, e := range ends {
				if !ins.Before(e.Add(-interval)) && ins.Before(e) {
					expected[e.UTC()][id] = true
				}
			}
		}
	}
	for _, e := range ends {
		res.Events += len(expected[e.UTC()])
	}
	for _, e := range ends {
		r, ok := byEnd[e.UTC()]
		switch {
		case !ok:
			res.Missing++
			continue
		case r.Status != "Completed":
			res.NotCompleted = append(res.NotCompleted, fmt.Sprintf("%s %s attempt %d: %s", e.Format(time.RFC3339), r.Status, r.Attempt, r.LatestError))
			continue
		}
		res.Completed++
		if r.RecordsCompleted != int64(len(expected[e.UTC()])) {
			res.RecordsMismatch = append(res.RecordsMismatch, fmt.Sprintf("%s: records_completed %d, source %d",
				e.Format(time.RFC3339), r.RecordsCompleted, len(expected[e.UTC()])))
		}
	}
	objs, err := ReadObjects(ctx, env, prefix)
	if err != nil {
		return res, err
	}
	res.Objects = len(objs)
	seen := map[time.Time]map[uuid.UUID]int{}
	for _, o := range objs {
		end := o.End.UTC()
		exp, ok := expected[end]
		for _, id := range o.UUIDs {
			res.Exported++
			if !ok || !exp[id] {
				res.Doubled++ // a row the interval's source does not hold
				continue
			}
			if seen[end] == nil {
				seen[end] = map[uuid.UUID]int{}
			}
			if seen[end][id]++; seen[end][id] > 1 {
				res.Doubled++
			}
		}
	}
	for end, ids := range expected {
		for id := range ids {
			if seen[end][id] == 0 {
				res.Lost++
			}
		}
	}
	// A run whose attempt logged "completed" more than once finished its export twice.
	if db, err := sql.Open("pgx", env.PGURL); err == nil {
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT run_id, count(*) FROM log_entries
			WHERE export_id = $1 AND run_id IS NOT NULL AND message LIKE 'completed:%' GROUP BY run_id HAVING count(*) > 1`, exportID)
		if err == nil {
			for rows.Next() {
				var id string
				var n int
				if rows.Scan(&id, &n) == nil {
					res.CompletedLogs[id] = n
				}
			}
			rows.Close()
		}
	}
	sort.Strings(res.NotCompleted)
	return res, nil
}

// Unfinished lists the River jobs not in a final state and the multipart uploads left
// open in the bucket.
func Leftovers(ctx context.Context, env *Env) (jobs int, uploads int, err error) {
	db, err := sql.Open("pgx", env.PGURL)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'cancelled', 'discarded')`).Scan(&jobs); err != nil {
		return 0, 0, err
	}
	out, err := env.S3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &env.Bucket})
	if err != nil {
		return jobs, 0, err
	}
	return jobs, len(out.Uploads), nil
}
