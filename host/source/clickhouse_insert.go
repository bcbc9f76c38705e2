package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
)

// Insert writes events into the ClickHouse events table in one INSERT (one block, so the
// server stores all of them or none): the capture endpoint's writer when several hosts share
// one ClickHouse source. InsertedAt must be set by the caller (capture sets the receipt
// time); a DateTime column keeps whole seconds (the value is truncated, which keeps the
// event inside the interval the receipt time lies in, since runs compare whole seconds),
// a DateTime64 column microseconds. The fallback column (_timestamp) gets the same time.
// Columns the source does not read (_offset, …) take their defaults. Unlike the embedded
// store, ClickHouse has no unique key: a re-sent event is stored again, and the source's
// LIMIT 1 BY (event, distinct_id, uuid) drops the copy within one interval.
func (s *ClickHouse) Insert(ctx context.Context, evs []abi.Event) error {
	if len(evs) == 0 {
		return nil
	}
	c := s.cfg.Columns
	cols := []string{c.UUID, c.Event, c.Properties, c.DistinctID, c.TeamID, c.PersonID,
		c.PersonProperties, c.ElementsChain, c.Timestamp, c.CreatedAt, c.InsertedAt}
	if c.FallbackInsertedAt != "-" {
		cols = append(cols, c.FallbackInsertedAt)
	}
	quoted := make([]string, len(cols))
	for i, n := range cols {
		quoted[i] = quoteIdent(n)
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+" ("+strings.Join(quoted, ", ")+")")
	if err != nil {
		return fmt.Errorf("source: clickhouse prepare insert: %w", err)
	}
	defer b.Abort() //nolint:errcheck // no-op once sent
	row := make([]any, len(cols))
	for i := range evs {
		e := &evs[i]
		if e.InsertedAt.IsZero() {
			return fmt.Errorf("source: event %d has no inserted_at", i)
		}
		props := e.Properties
		if props == "" {
			props = "{}"
		}
		ins := s.colTime(c.InsertedAt, e.InsertedAt)
		var pid *uuid.UUID
		if e.PersonID != nil {
			u := uuid.UUID(*e.PersonID)
			pid = &u
		}
		var created *time.Time
		if e.CreatedAt != nil {
			t := s.colTime(c.CreatedAt, *e.CreatedAt)
			created = &t
		}
		id := uuid.UUID(e.UUID)
		row = row[:0]
		row = append(row, s.colUUID(c.UUID, &id), e.Event, props, e.DistinctID, e.TeamID,
			s.colUUID(c.PersonID, pid), s.colString(c.PersonProperties, e.PersonProperties),
			e.ElementsChain, s.colTime(c.Timestamp, e.Timestamp), s.colNullTime(c.CreatedAt, created),
			s.colNullTime(c.InsertedAt, &ins))
		if c.FallbackInsertedAt != "-" {
			row = append(row, s.colNullTime(c.FallbackInsertedAt, &ins))
		}
		if err := b.Append(row...); err != nil {
			return fmt.Errorf("source: clickhouse insert event %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("source: clickhouse insert %d events: %w", len(evs), err)
	}
	return nil
}

func (s *ClickHouse) nullable(col string) bool {
	return strings.HasPrefix(s.types[col], "Nullable(")
}

// colTime is t at the column's precision: whole seconds for DateTime, microseconds for
// DateTime64.
func (s *ClickHouse) colTime(col string, t time.Time) time.Time {
	if strings.Contains(s.types[col], "DateTime64") {
		return t.UTC().Truncate(time.Microsecond)
	}
	return t.UTC().Truncate(time.Second)
}

func (s *ClickHouse) colNullTime(col string, t *time.Time) any {
	if s.nullable(col) {
		if t == nil {
			return (*time.Time)(nil)
		}
		v := s.colTime(col, *t)
		return &v
	}
	if t == nil {
		return time.Unix(0, 0).UTC()
	}
	return s.colTime(col, *t)
}

func (s *ClickHouse) colUUID(col string, u *uuid.UUID) any {
	str := strings.Contains(s.types[col], "String")
	switch {
	case s.nullable(col) && u == nil:
		if str {
			return (*string)(nil)
		}
		return (*uuid.UUID)(nil)
	case u == nil && str:
		return ""
	case u == nil:
		return uuid.UUID{}
	case str:
		return u.String()
	}
	return *u
}

func (s *ClickHouse) colString(col string, v *string) any {
	if s.nullable(col) {
		return v
	}
	if v == nil {
		return ""
	}
	return *v
}

// ErrInsertTooLate is returned (wrapped) by CaptureInserter when events could not be
// stored within MaxDelay of their receipt: the client must send them again.
var ErrInsertTooLate = errors.New("source: events not stored within the capture deadline")

// CaptureInserter stores captured events into ClickHouse within MaxDelay of their receipt
// time (their InsertedAt). A run exports [start, end) by inserted_at once end + the settle
// delay has passed, so an event stored later than that would be skipped by its interval's
// run: the insert is abandoned at receipt + MaxDelay and the request fails (the client
// retries, and the retry gets a new receipt time). Keep MaxDelay below the settle delay.
type CaptureInserter struct {
	CH       *ClickHouse
	MaxDelay time.Duration // default 10 s
}

// Insert implements capture.Inserter.
func (c CaptureInserter) Insert(ctx context.Context, evs []abi.Event) error {
	if len(evs) == 0 {
		return nil
	}
	maxDelay := c.MaxDelay
	if maxDelay <= 0 {
		maxDelay = 10 * time.Second
	}
	first := evs[0].InsertedAt
	for _, e := range evs[1:] {
		if e.InsertedAt.Before(first) {
			first = e.InsertedAt
		}
	}
	deadline := first.Add(maxDelay)
	if !time.Now().Before(deadline) {
		return fmt.Errorf("%w (received %s ago)", ErrInsertTooLate, time.Since(first).Round(time.Millisecond))
	}
	ictx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := c.CH.Insert(ictx, evs); err != nil {
		if errors.Is(ictx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w: %w", ErrInsertTooLate, err)
		}
		return err
	}
	return nil
}
