package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/abi"
)

// ErrStoreClosed is returned by Insert after Close.
var ErrStoreClosed = errors.New("source: the event store is closed")

// Group commit (docs/sources.md, "Capture and the embedded store"): one goroutine owns one
// connection and writes the events of every Insert waiting in a bounded queue in one
// transaction, so N concurrent requests cost one commit (one WAL append, one lock) instead
// of N commits contending for SQLite's single write lock. Each Insert returns only when the
// transaction holding its events has committed, or with the error that stopped it: a
// failing commit fails exactly the requests it held. Inside a shared transaction each
// request is a savepoint, so a request whose rows fail is rolled back alone and the others
// still commit: every request stays all or nothing.
const (
	writerQueue     = 128    // Inserts waiting for the writer; more block (back-pressure)
	writerMaxEvents = 10_000 // events gathered into one transaction (one request may exceed it)
)

type writeReq struct {
	evs   []abi.Event
	state atomic.Int32 // reqQueued, then reqTaken by the writer or reqAbandoned by the caller
	done  chan error   // buffered: the writer never blocks
}

const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type groupWriter struct {
	conn *sql.Conn
	ins  *sql.Stmt // one row
	insN *sql.Stmt // rowsPerInsert rows
	args []any     // insN's arguments, reused

	mu      sync.RWMutex // closed and the send on reqs
	closed  bool
	reqs    chan *writeReq
	stopped chan struct{}
	taken   atomic.Int64 // requests received by the writer (tests)
}

const (
	insertSQL = `INSERT OR IGNORE INTO events (uuid, event, distinct_id, person_id,
	team_id, properties, person_properties, elements_chain, timestamp, created_at, inserted_at)
	VALUES `
	rowSQL        = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertColumns = 11
	// Rows per multi-row INSERT: one statement step per 50 rows instead of one per row
	// (550 parameters, far below SQLite's limit of 32766).
	rowsPerInsert = 50
)

func newGroupWriter(ctx context.Context, db *sql.DB) (*groupWriter, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("source: writer connection: %w", err)
	}
	ins, err := conn.PrepareContext(ctx, insertSQL+rowSQL)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("source: prepare insert: %w", err)
	}
	insN, err := conn.PrepareContext(ctx, insertSQL+strings.TrimSuffix(strings.Repeat(rowSQL+", ", rowsPerInsert), ", "))
	if err != nil {
		ins.Close()
		conn.Close()
		return nil, fmt.Errorf("source: prepare insert: %w", err)
	}
	w := &groupWriter{conn: conn, ins: ins, insN: insN, args: make([]any, 0, rowsPerInsert*insertColumns),
		reqs: make(chan *writeReq, writerQueue), stopped: make(chan struct{})}
	go w.loop()
	return w, nil
}

// insert queues evs and waits for the commit that holds them. If ctx ends while they are
// still queued, they are withdrawn (never written) and ctx's error returned; once the
// writer has taken them, insert waits for that transaction's outcome. Either way the
// writer no longer reads evs when insert returns.
func (w *groupWriter) insert(ctx context.Context, evs []abi.Event) error {
	r := &writeReq{evs: evs, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrStoreClosed
	}
	select {
	case w.reqs <- r:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return fmt.Errorf("source: insert not queued: %w", ctx.Err())
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return fmt.Errorf("source: insert withdrawn before it was written: %w", ctx.Err())
		}
		return <-r.done
	}
}

// close writes what is queued, then stops the writer and releases its connection.
func (w *groupWriter) close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	<-w.stopped
	return errors.Join(w.ins.Close(), w.insN.Close(), w.conn.Close())
}

func (w *groupWriter) loop() {
	defer close(w.stopped)
	group := make([]*writeReq, 0, writerQueue)
	for r := range w.reqs {
		w.taken.Add(1)
		group = append(group[:0], r)
		n := len(r.evs)
	gather:
		for n < writerMaxEvents {
			select {
			case r, ok := <-w.reqs:
				if !ok {
					break gather
				}
				w.taken.Add(1)
				group = append(group, r)
				n += len(r.evs)
			default:
				break gather
			}
		}
		errs := w.commit(group)
		for i, r := range group {
			r.done <- errs[i]
		}
		clear(group)
	}
}

// commit writes group in one transaction and returns each request's outcome.
func (w *groupWriter) commit(group []*writeReq) []error {
	// The writer's statements do not follow any request's context: one caller leaving must
	// not roll back the others' events.
	ctx := context.Background()
	errs := make([]error, len(group))
	failAll := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return failAll(fmt.Errorf("source: begin insert: %w", err))
	}
	// One request alone needs no savepoint: its failure rolls the transaction back.
	shared := len(group) > 1
	ok := 0
	for i, r := range group {
		if !r.state.CompareAndSwap(reqQueued, reqTaken) {
			errs[i] = errors.New("source: insert withdrawn") // its caller has left
			continue
		}
		if shared {
			if _, err := w.conn.ExecContext(ctx, "SAVEPOINT req"); err != nil {
				w.rollback()
				return failAll(fmt.Errorf("source: savepoint: %w", err))
			}
		}
		if err := w.write(ctx, r.evs); err != nil {
			errs[i] = err
			if !shared {
				w.rollback()
				return errs
			}
			if _, rerr := w.conn.ExecContext(ctx, "ROLLBACK TO req"); rerr != nil {
				w.rollback()
				return failAll(fmt.Errorf("source: rolling back a failed request: %w (after %w)", rerr, err))
			}
		} else {
			ok++
		}
		if shared {
			if _, err := w.conn.ExecContext(ctx, "RELEASE req"); err != nil {
				w.rollback()
				return failAll(fmt.Errorf("source: release savepoint: %w", err))
			}
		}
	}
	if ok == 0 {
		w.rollback()
		return errs
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		w.rollback()
		return failAll(fmt.Errorf("source: commit insert: %w", err))
	}
	return errs
}

// rollback ends a failed transaction; a rollback error leaves nothing more to undo (SQLite
// rolls back on its own when it cannot continue).
func (w *groupWriter) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (w *groupWriter) write(ctx context.Context, evs []abi.Event) error {
	defer clear(w.args[:cap(w.args)]) // no reference to the caller's events once it returns
	i := 0
	for ; i+rowsPerInsert <= len(evs); i += rowsPerInsert {
		w.args = w.args[:0]
		for j := i; j < i+rowsPerInsert; j++ {
			w.args = appendRow(w.args, &evs[j])
		}
		if _, err := w.insN.ExecContext(ctx, w.args...); err != nil {
			return fmt.Errorf("source: insert events %d to %d: %w", i, i+rowsPerInsert-1, err)
		}
	}
	for ; i < len(evs); i++ {
		w.args = appendRow(w.args[:0], &evs[i])
		if _, err := w.ins.ExecContext(ctx, w.args...); err != nil {
			return fmt.Errorf("source: insert event %d: %w", i, err)
		}
	}
	return nil
}

// appendRow appends e's columns in insertSQL's order.
func appendRow(args []any, e *abi.Event) []any {
	var pid, pp, ca any
	if e.PersonID != nil {
		pid = e.PersonID[:]
	}
	if e.PersonProperties != nil {
		pp = *e.PersonProperties
	}
	if e.CreatedAt != nil {
		ca = e.CreatedAt.UnixMicro()
	}
	props := e.Properties
	if props == "" {
		props = "{}"
	}
	return append(args, e.UUID[:], e.Event, e.DistinctID, pid, e.TeamID, props, pp,
		e.ElementsChain, e.Timestamp.UnixMicro(), ca, e.InsertedAt.UnixMicro())
}
