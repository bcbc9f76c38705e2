package source_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/host/source"
	"github.com/sluicehq/sluice/host/source/sourcetest"
)

func openStore(t *testing.T) (*source.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := source.NewSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// events returns n events named name, with uuids unique to (tag, i).
func events(tag byte, name string, n int) []abi.Event {
	evs := make([]abi.Event, n)
	for i := range evs {
		evs[i] = abi.Event{UUID: [16]byte{tag, byte(i >> 8), byte(i)}, Event: name, DistinctID: "d", TeamID: 1,
			Properties: `{}`, Timestamp: sourcetest.Base, InsertedAt: sourcetest.Base.Add(time.Duration(i) * time.Microsecond)}
	}
	return evs
}

func countWhere(t *testing.T, s *source.SQLite, tag byte) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM events WHERE substr(uuid, 1, 1) = ?", []byte{tag}).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// holdWriteLock takes SQLite's write lock from another connection, so the writer blocks
// in BEGIN IMMEDIATE until release is called.
func holdWriteLock(t *testing.T, s *source.SQLite) (release func()) {
	t.Helper()
	conn, err := s.DB().Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
			t.Error(err)
		}
		conn.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

type outcome struct {
	mu   sync.Mutex
	errs map[byte]error
	wg   sync.WaitGroup
}

func (o *outcome) insert(ctx context.Context, s *source.SQLite, tag byte, evs []abi.Event) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		err := s.Insert(ctx, evs)
		o.mu.Lock()
		o.errs[tag] = err
		o.mu.Unlock()
	}()
}

// group makes the writer commit request a alone and then the requests of rest in one
// shared transaction, and returns every request's outcome.
func group(t *testing.T, s *source.SQLite, a []abi.Event, rest map[byte][]abi.Event) map[byte]error {
	t.Helper()
	release := holdWriteLock(t, s)
	o := &outcome{errs: map[byte]error{}}
	taken := source.WriterTaken(s)
	o.insert(context.Background(), s, 'a', a)
	waitFor(t, "the writer to take the first request", func() bool { return source.WriterTaken(s) == taken+1 })
	for tag, evs := range rest {
		o.insert(context.Background(), s, tag, evs)
	}
	waitFor(t, "the other requests to queue", func() bool { return source.WriterQueued(s) == len(rest) })
	release()
	o.wg.Wait()
	if got := source.WriterTaken(s); got != taken+1+int64(len(rest)) {
		t.Fatalf("writer took %d requests, want %d", got-taken, 1+len(rest))
	}
	return o.errs
}

// A request whose rows fail is rolled back alone; the requests sharing its transaction
// commit.
func TestGroupCommitFailingRequestFailsAlone(t *testing.T) {
	s, _ := openStore(t)
	if _, err := s.DB().Exec(`CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.event = 'boom'
		BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	bad := events('c', "ok", 61) // a multi-row INSERT of 50 rows fails on its 11th, then 11 single rows
	bad[10].Event = "boom"
	bad2 := events('f', "ok", 55) // fails in the single-row INSERTs after the first 50
	bad2[52].Event = "boom"
	errs := group(t, s, events('a', "ok", 10), map[byte][]abi.Event{
		'b': events('b', "ok", 20), 'c': bad, 'd': events('d', "ok", 40), 'f': bad2})
	for tag, want := range map[byte]int{'a': 10, 'b': 20, 'd': 40} {
		if errs[tag] != nil {
			t.Errorf("request %c: %v", tag, errs[tag])
		}
		if n := countWhere(t, s, tag); n != want {
			t.Errorf("request %c: %d events stored, want %d", tag, n, want)
		}
	}
	for _, tag := range []byte("cf") {
		if errs[tag] == nil || !strings.Contains(errs[tag].Error(), "boom refused") {
			t.Errorf("failing request %c: %v", tag, errs[tag])
		}
		if n := countWhere(t, s, tag); n != 0 {
			t.Errorf("failing request %c left %d events (all or nothing)", tag, n)
		}
	}
}

// A failure that ends the transaction fails exactly the requests it held.
func TestGroupCommitTransactionFailureFailsItsRequests(t *testing.T) {
	s, _ := openStore(t)
	if _, err := s.DB().Exec(`CREATE TRIGGER doom BEFORE INSERT ON events WHEN NEW.event = 'doom'
		BEGIN SELECT RAISE(ROLLBACK, 'doom rolls back'); END`); err != nil {
		t.Fatal(err)
	}
	errs := group(t, s, events('a', "ok", 10), map[byte][]abi.Event{
		'b': events('b', "ok", 20), 'c': events('c', "doom", 1), 'd': events('d', "ok", 40)})
	if errs['a'] != nil || countWhere(t, s, 'a') != 10 {
		t.Errorf("request a, committed alone before: %v, %d events", errs['a'], countWhere(t, s, 'a'))
	}
	for _, tag := range []byte("bcd") {
		if errs[tag] == nil {
			t.Errorf("request %c shared the rolled-back transaction but succeeded", tag)
		}
		if n := countWhere(t, s, tag); n != 0 {
			t.Errorf("request %c: %d events stored after a rollback", tag, n)
		}
	}
	if err := s.Insert(context.Background(), events('e', "ok", 5)); err != nil || countWhere(t, s, 'e') != 5 {
		t.Errorf("the writer did not recover: %v", err)
	}
}

// Concurrent Inserts all land, once each.
func TestGroupCommitConcurrentInserts(t *testing.T) {
	s, _ := openStore(t)
	o := &outcome{errs: map[byte]error{}}
	for g := range 16 {
		o.insert(context.Background(), s, byte(g), events(byte(g), "ok", 500))
	}
	o.wg.Wait()
	for tag, err := range o.errs {
		if err != nil {
			t.Errorf("request %d: %v", tag, err)
		}
	}
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil || n != 16*500 {
		t.Fatalf("%d events stored, want %d (%v)", n, 16*500, err)
	}
}

// A request still queued when its context ends is withdrawn: never written.
func TestGroupCommitWithdrawnOnContextEnd(t *testing.T) {
	s, _ := openStore(t)
	release := holdWriteLock(t, s)
	o := &outcome{errs: map[byte]error{}}
	o.insert(context.Background(), s, 'a', events('a', "ok", 10))
	waitFor(t, "the writer to take a", func() bool { return source.WriterTaken(s) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	o.insert(ctx, s, 'b', events('b', "ok", 10))
	waitFor(t, "b to queue", func() bool { return source.WriterQueued(s) == 1 })
	cancel()
	waitFor(t, "b to return", func() bool { o.mu.Lock(); defer o.mu.Unlock(); return o.errs['b'] != nil })
	release()
	o.wg.Wait()
	if !errors.Is(o.errs['b'], context.Canceled) || o.errs['a'] != nil {
		t.Fatalf("a: %v, b: %v", o.errs['a'], o.errs['b'])
	}
	if a, b := countWhere(t, s, 'a'), countWhere(t, s, 'b'); a != 10 || b != 0 {
		t.Errorf("a stored %d (want 10), withdrawn b stored %d (want 0)", a, b)
	}
}

// Close commits what is queued; Inserts after it fail with ErrStoreClosed. Every Insert
// is all or nothing either way.
func TestGroupCommitClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := source.NewSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	o := &outcome{errs: map[byte]error{}}
	for g := range 32 {
		o.insert(context.Background(), s, byte(g), events(byte(g), "ok", 100))
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o.wg.Wait()
	if err := s.Insert(context.Background(), events(99, "ok", 1)); !errors.Is(err, source.ErrStoreClosed) {
		t.Errorf("insert after close: %v", err)
	}
	s, err = source.NewSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ok := 0
	for tag, err := range o.errs {
		n := countWhere(t, s, tag)
		switch {
		case err == nil && n == 100:
			ok++
		case errors.Is(err, source.ErrStoreClosed) && n == 0:
		default:
			t.Errorf("request %d: %v with %d events stored", tag, err, n)
		}
	}
	t.Logf("%d of 32 requests committed before Close, the rest refused", ok)
}
