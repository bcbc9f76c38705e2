// Package schedule computes the interval ends of a batch export (interval,
// timezone, offset, start/end bounds) and fires a callback at each end through
// a gocron scheduler.
//
// A run for the interval end T exports [start(T), T), where start(T) is the
// previous interval end. Day and week boundaries are wall-clock boundaries in
// the export's timezone, so a "day" across a DST change lasts 23 or 25 hours.
// See docs/scheduling.md for the rules.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Interval names, as PostHog spells them.
const (
	IntervalHour      = "hour"
	IntervalDay       = "day"
	IntervalWeek      = "week"
	Interval5Minutes  = "every 5 minutes"
	Interval15Minutes = "every 15 minutes"
)

// Intervals lists the allowed interval names.
var Intervals = []string{IntervalHour, IntervalDay, IntervalWeek, Interval5Minutes, Interval15Minutes}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("schedule: invalid spec")

// Spec is the schedule of one batch export.
type Spec struct {
	// Interval is one of Intervals.
	Interval string
	// Timezone is an IANA name ("UTC", "Europe/Paris"); empty means UTC.
	Timezone string
	// Offset shifts every interval end: for "hour" the minute/second within
	// the hour (< 1h); for "day" the wall-clock time of day (< 24h); for
	// "week" the time since Sunday 00:00 (< 7d: day*24h + time of day); for
	// the 5- and 15-minute intervals the seconds past each local multiple of
	// the period (< 5m, < 15m: offset 120 ends a 5-minute export at :02, :07,
	// ...). Whole seconds only.
	Offset time.Duration
	// StartAt and EndAt bound the data: no interval [start, end) begins
	// before StartAt or ends after EndAt. Either may be nil.
	StartAt, EndAt *time.Time
}

// ParseInterval normalises an interval name (case and surrounding space are
// ignored) and rejects unknown ones, naming the allowed values.
func ParseInterval(s string) (string, error) {
	n := strings.Join(strings.Fields(strings.ToLower(s)), " ")
	for _, iv := range Intervals {
		if n == iv {
			return iv, nil
		}
	}
	return "", fmt.Errorf("%w: unknown interval %q (allowed: %q)", ErrInvalid, s, Intervals)
}

// Parse builds and validates a Spec.
func Parse(interval, timezone string, offset time.Duration, startAt, endAt *time.Time) (Spec, error) {
	iv, err := ParseInterval(interval)
	if err != nil {
		return Spec{}, err
	}
	s := Spec{Interval: iv, Timezone: timezone, Offset: offset, StartAt: startAt, EndAt: endAt}
	return s, s.Validate()
}

// Field names of an export's schedule, as the REST API spells them: FieldError.Field.
const (
	FieldInterval = "interval"
	FieldTimezone = "timezone"
	FieldOffset   = "interval_offset"
	FieldEndAt    = "end_at"
)

// FieldError is one problem of a Spec, naming the export field at fault. It wraps
// ErrInvalid. The API reports it on that field; the scheduler refuses the spec with it.
type FieldError struct {
	Field   string // FieldInterval, FieldTimezone, FieldOffset or FieldEndAt
	Message string
}

func (e *FieldError) Error() string { return ErrInvalid.Error() + ": " + e.Field + ": " + e.Message }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Validate checks the interval, timezone, offset bounds and start/end order: nil when
// Problems finds none, else the first problem (errors.As finds its *FieldError) or, with
// several, all of them joined. The API validates exports with Problems, so whatever it
// accepts the scheduler accepts.
func (s Spec) Validate() error {
	ps := s.Problems()
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Problems lists every problem of the spec, in field order (interval, timezone,
// interval_offset, end_at); nil when the spec is valid. It is the one definition of a
// valid schedule: the API answers 400 naming these fields, Upsert refuses the same specs.
func (s Spec) Problems() []*FieldError {
	var out []*FieldError
	add := func(field, format string, args ...any) {
		out = append(out, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	_, ivErr := ParseInterval(s.Interval)
	if ivErr != nil {
		add(FieldInterval, "unknown interval %q (allowed: %q)", s.Interval, Intervals)
	}
	if _, err := s.location(); err != nil {
		add(FieldTimezone, "unknown time zone %q: want an IANA name such as UTC or Europe/Paris", s.Timezone)
	}
	if ivErr == nil {
		max := s.maxOffset()
		maxSec := int64(max/time.Second) - 1
		switch {
		case s.Offset < 0 || s.Offset >= max:
			add(FieldOffset, "must be from 0 to %d seconds for interval %q (less than %s), got %s", maxSec, s.norm(), max, s.Offset)
		case s.Offset%time.Second != 0:
			add(FieldOffset, "must be a whole number of seconds, got %s", s.Offset)
		}
	}
	if s.StartAt != nil && s.EndAt != nil && !s.StartAt.Before(*s.EndAt) {
		add(FieldEndAt, "must be after start_at (start_at %s, end_at %s)", s.StartAt.UTC().Format(time.RFC3339), s.EndAt.UTC().Format(time.RFC3339))
	}
	return out
}

// maxOffset is the exclusive bound of the offset: the interval's nominal period. An
// offset shifts the interval boundaries by that much, for every interval.
func (s Spec) maxOffset() time.Duration { return s.Period() }

func (s Spec) norm() string {
	iv, err := ParseInterval(s.Interval)
	if err != nil {
		return s.Interval
	}
	return iv
}

func (s Spec) location() (*time.Location, error) {
	if s.Timezone == "" {
		return time.UTC, nil
	}
	if s.Timezone == "Local" {
		// The host's own zone: not a property of the export, and hosts may differ.
		return nil, fmt.Errorf("%w: timezone %q is the host's zone, not an IANA name", ErrInvalid, s.Timezone)
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("%w: timezone %q: %v", ErrInvalid, s.Timezone, err)
	}
	return loc, nil
}

// Location returns the export's timezone (UTC when empty or invalid).
func (s Spec) Location() *time.Location {
	loc, err := s.location()
	if err != nil {
		return time.UTC
	}
	return loc
}

// Period is the nominal length of the interval (a day is 24h even on a DST
// day, whose real interval IntervalFor reports).
func (s Spec) Period() time.Duration {
	switch s.norm() {
	case IntervalHour:
		return time.Hour
	case IntervalDay:
		return 24 * time.Hour
	case IntervalWeek:
		return 7 * 24 * time.Hour
	case Interval5Minutes:
		return 5 * time.Minute
	case Interval15Minutes:
		return 15 * time.Minute
	}
	return 0
}

func (s Spec) calendar() bool {
	n := s.norm()
	return n == IntervalDay || n == IntervalWeek
}

// dayBoundary is the end on the local calendar date y-m-d (plus offset as
// wall-clock time). A wall time that does not exist (in a spring-forward gap)
// is moved forward by the gap: 02:30 becomes 03:30 on the day New York skips
// 02:00-03:00. An ambiguous wall time (fall back) is its first occurrence.
func (s Spec) dayBoundary(loc *time.Location, y int, m time.Month, d int) time.Time {
	off := int(s.Offset / time.Second)
	t := time.Date(y, m, d, 0, 0, off, 0, loc)
	want := off % 86400
	if t.Hour()*3600+t.Minute()*60+t.Second() != want {
		// time.Date picked the offset before the gap (a wall time before
		// it); shift by the gap's length.
		_, before := t.Zone()
		_, after := t.Add(6 * time.Hour).Zone()
		if after > before {
			t = t.Add(time.Duration(after-before) * time.Second)
		}
	}
	return t
}

// nextRaw is the smallest boundary strictly after t (ignoring StartAt/EndAt).
func (s Spec) nextRaw(t time.Time) time.Time {
	loc := s.Location()
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch s.norm() {
	case IntervalDay:
		c := s.dayBoundary(loc, y, m, d)
		for !c.After(t) {
			d++
			c = s.dayBoundary(loc, y, m, d)
		}
		return c
	case IntervalWeek:
		d -= int(lt.Weekday()) // back to Sunday
		c := s.dayBoundary(loc, y, m, d)
		for !c.After(t) {
			d += 7
			c = s.dayBoundary(loc, y, m, d)
		}
		return c
	}
	p := s.Period()
	if p <= 0 {
		return time.Time{}
	}
	c := s.floorSub(t, loc).Add(p)
	// Re-align after a UTC offset change between t and c.
	if f := s.floorSub(c, loc); !f.Equal(c) && f.After(t) {
		c = f
	}
	return c
}

// prevRaw is the largest boundary strictly before t.
func (s Spec) prevRaw(t time.Time) time.Time {
	loc := s.Location()
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch s.norm() {
	case IntervalDay:
		c := s.dayBoundary(loc, y, m, d)
		for !c.Before(t) {
			d--
			c = s.dayBoundary(loc, y, m, d)
		}
		return c
	case IntervalWeek:
		d -= int(lt.Weekday())
		c := s.dayBoundary(loc, y, m, d)
		for !c.Before(t) {
			d -= 7
			c = s.dayBoundary(loc, y, m, d)
		}
		return c
	}
	f := s.floorSub(t, loc)
	if !f.Before(t) {
		f = s.floorSub(t.Add(-time.Nanosecond), loc)
	}
	return f
}

// floorSub aligns t down to a sub-day boundary in local time: local clock
// minus offset is a multiple of the period.
func (s Spec) floorSub(t time.Time, loc *time.Location) time.Time {
	p := int64(s.Period() / time.Second)
	_, zoneOff := t.In(loc).Zone()
	u := t.Unix() + int64(zoneOff) - int64(s.Offset/time.Second)
	r := u % p
	if r < 0 {
		r += p
	}
	return time.Unix(t.Unix()-r, 0).In(loc)
}

// IntervalFor returns [start, end) for the run ending at end: start is the
// previous interval end (wall-clock for day and week, so 23h or 25h across a
// DST change). end should be an interval end.
func (s Spec) IntervalFor(end time.Time) (start, stop time.Time) {
	return s.prevRaw(end), end
}

// inBounds: the interval ending at end lies within StartAt/EndAt.
func (s Spec) inBounds(end time.Time) bool {
	if s.EndAt != nil && end.After(*s.EndAt) {
		return false
	}
	if s.StartAt != nil {
		start, _ := s.IntervalFor(end)
		if start.Before(*s.StartAt) {
			return false
		}
	}
	return true
}

// EndsBetween lists every interval end T with after < T <= upTo whose
// interval [start, T) lies within StartAt/EndAt, in order. Times are in the
// export's location (compare with Equal).
func (s Spec) EndsBetween(after, upTo time.Time) []time.Time {
	if s.Period() <= 0 || !after.Before(upTo) {
		return nil
	}
	if s.EndAt != nil && upTo.After(*s.EndAt) {
		upTo = *s.EndAt
	}
	var out []time.Time
	for t := s.nextRaw(after); !t.IsZero() && !t.After(upTo); t = s.nextRaw(t) {
		if s.inBounds(t) {
			out = append(out, t)
		}
	}
	return out
}

// LastEnd is the latest valid interval end at or before now (zero if none).
func (s Spec) LastEnd(now time.Time) time.Time {
	if s.Period() <= 0 {
		return time.Time{}
	}
	if s.EndAt != nil && now.After(*s.EndAt) {
		now = *s.EndAt
	}
	t := s.nextRaw(now)
	for range 3 {
		t = s.prevRaw(t)
		if s.StartAt != nil && t.Before(*s.StartAt) {
			return time.Time{}
		}
		if s.inBounds(t) {
			return t
		}
	}
	return time.Time{}
}

// Next is the first valid interval end strictly after now (zero if the
// export has ended).
func (s Spec) Next(now time.Time) time.Time {
	if s.Period() <= 0 {
		return time.Time{}
	}
	from := now
	if s.StartAt != nil && s.StartAt.After(from) {
		from = *s.StartAt
	}
	t := s.nextRaw(from)
	for range 3 {
		if s.EndAt != nil && t.After(*s.EndAt) {
			return time.Time{}
		}
		if s.inBounds(t) {
			return t
		}
		t = s.nextRaw(t)
	}
	return time.Time{}
}

// FirstEnd is the end of the first run of an export created at createdAt:
// the end of the period during which it was created (never createdAt itself,
// even on a boundary), as PostHog does. StartAt/EndAt still apply.
func (s Spec) FirstEnd(createdAt time.Time) time.Time { return s.Next(createdAt) }

// CatchUp lists the interval ends missed while the host was down: every end
// after lastEnd (the last end already enqueued; the export's creation time if
// none) and at or before now, limited to the last window (ends <= now-window
// are dropped). window <= 0 disables catch-up.
func CatchUp(spec Spec, lastEnd, now time.Time, window time.Duration) []time.Time {
	if window <= 0 {
		return nil
	}
	after := lastEnd
	if floor := now.Add(-window); after.Before(floor) {
		after = floor
	}
	return spec.EndsBetween(after, now)
}
