package schedule

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tp(s string) *time.Time { t := utc(s); return &t }

func fmtTimes(ts []time.Time) string {
	var b []string
	for _, t := range ts {
		b = append(b, t.UTC().Format(time.RFC3339))
	}
	return strings.Join(b, " ")
}

func TestParseAndValidate(t *testing.T) {
	cases := []struct {
		name     string
		interval string
		tz       string
		offset   time.Duration
		start    *time.Time
		end      *time.Time
		wantErr  string
	}{
		{name: "hour", interval: "hour"},
		{name: "case and space", interval: "  Every  5 Minutes "},
		{name: "15m", interval: "every 15 minutes", tz: "Europe/Paris"},
		{name: "day offset", interval: "day", tz: "America/New_York", offset: 23*time.Hour + 59*time.Minute},
		{name: "week offset", interval: "week", offset: 6*24*time.Hour + 23*time.Hour},
		{name: "hour offset", interval: "hour", offset: 59 * time.Minute},
		{name: "unknown interval", interval: "month", wantErr: `allowed: ["hour" "day" "week" "every 5 minutes" "every 15 minutes"]`},
		{name: "bad tz", interval: "day", tz: "Mars/Olympus", wantErr: "timezone"},
		{name: "day offset too big", interval: "day", offset: 24 * time.Hour, wantErr: "less than 24h0m0s"},
		{name: "week offset too big", interval: "week", offset: 7 * 24 * time.Hour, wantErr: "less than 168h0m0s"},
		{name: "hour offset too big", interval: "hour", offset: time.Hour, wantErr: "less than 1h0m0s"},
		{name: "5m offset", interval: "every 5 minutes", offset: 4*time.Minute + 59*time.Second},
		{name: "15m offset", interval: "every 15 minutes", offset: 14 * time.Minute},
		{name: "5m offset too big", interval: "every 5 minutes", offset: 5 * time.Minute, wantErr: "less than 5m0s"},
		{name: "15m offset too big", interval: "every 15 minutes", offset: 15 * time.Minute, wantErr: "from 0 to 899 seconds"},
		{name: "Local tz", interval: "day", tz: "Local", wantErr: "timezone"},
		{name: "negative offset", interval: "day", offset: -time.Hour, wantErr: "from 0 to 86399"},
		{name: "sub-second offset", interval: "day", offset: time.Millisecond, wantErr: "whole number"},
		{name: "start after end", interval: "day", start: tp("2026-02-01T00:00:00Z"), end: tp("2026-01-01T00:00:00Z"), wantErr: "end_at: must be after start_at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse(c.interval, c.tz, c.offset, c.start, c.end)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s.Period() == 0 {
					t.Fatalf("period 0 for %q", s.Interval)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want containing %q wrapping ErrInvalid", err, c.wantErr)
			}
		})
	}
}

func TestEndsBetween(t *testing.T) {
	cases := []struct {
		name        string
		spec        Spec
		after, upTo string
		want        string // RFC3339 UTC, space separated
	}{
		{name: "hour UTC", spec: Spec{Interval: "hour"}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T03:30:00Z",
			want: "2026-01-01T01:00:00Z 2026-01-01T02:00:00Z 2026-01-01T03:00:00Z"},
		{name: "hour includes upTo excludes after", spec: Spec{Interval: "hour"}, after: "2026-01-01T01:00:00Z", upTo: "2026-01-01T02:00:00Z",
			want: "2026-01-01T02:00:00Z"},
		{name: "hour offset 15m", spec: Spec{Interval: "hour", Offset: 15 * time.Minute}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T02:00:00Z",
			want: "2026-01-01T00:15:00Z 2026-01-01T01:15:00Z"},
		{name: "hour Kolkata aligns to local hours", spec: Spec{Interval: "hour", Timezone: "Asia/Kolkata"}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T02:00:00Z",
			want: "2026-01-01T00:30:00Z 2026-01-01T01:30:00Z"},
		{name: "hour NY fall back: 01:00 happens twice", spec: Spec{Interval: "hour", Timezone: "America/New_York"}, after: "2026-11-01T04:00:00Z", upTo: "2026-11-01T08:00:00Z",
			want: "2026-11-01T05:00:00Z 2026-11-01T06:00:00Z 2026-11-01T07:00:00Z 2026-11-01T08:00:00Z"},
		{name: "hour NY spring forward: no 02:00", spec: Spec{Interval: "hour", Timezone: "America/New_York"}, after: "2026-03-08T05:00:00Z", upTo: "2026-03-08T08:00:00Z",
			want: "2026-03-08T06:00:00Z 2026-03-08T07:00:00Z 2026-03-08T08:00:00Z"},
		{name: "5 minutes", spec: Spec{Interval: "every 5 minutes"}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T00:17:00Z",
			want: "2026-01-01T00:05:00Z 2026-01-01T00:10:00Z 2026-01-01T00:15:00Z"},
		{name: "15 minutes Paris", spec: Spec{Interval: "every 15 minutes", Timezone: "Europe/Paris"}, after: "2026-01-01T00:07:00Z", upTo: "2026-01-01T01:00:00Z",
			want: "2026-01-01T00:15:00Z 2026-01-01T00:30:00Z 2026-01-01T00:45:00Z 2026-01-01T01:00:00Z"},
		{name: "day UTC", spec: Spec{Interval: "day"}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-03T12:00:00Z",
			want: "2026-01-02T00:00:00Z 2026-01-03T00:00:00Z"},
		{name: "day UTC offset 2h", spec: Spec{Interval: "day", Offset: 2 * time.Hour}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-03T00:00:00Z",
			want: "2026-01-01T02:00:00Z 2026-01-02T02:00:00Z"},
		{name: "day NY across spring forward", spec: Spec{Interval: "day", Timezone: "America/New_York"}, after: "2026-03-07T00:00:00Z", upTo: "2026-03-10T05:00:00Z",
			want: "2026-03-07T05:00:00Z 2026-03-08T05:00:00Z 2026-03-09T04:00:00Z 2026-03-10T04:00:00Z"},
		{name: "day NY across fall back", spec: Spec{Interval: "day", Timezone: "America/New_York"}, after: "2026-10-31T00:00:00Z", upTo: "2026-11-03T00:00:00Z",
			want: "2026-10-31T04:00:00Z 2026-11-01T04:00:00Z 2026-11-02T05:00:00Z"},
		{name: "day NY offset 06:00 across spring forward", spec: Spec{Interval: "day", Timezone: "America/New_York", Offset: 6 * time.Hour}, after: "2026-03-07T12:00:00Z", upTo: "2026-03-09T12:00:00Z",
			want: "2026-03-08T10:00:00Z 2026-03-09T10:00:00Z"},
		{name: "day NY offset 02:30 in the gap moves to 03:30 EDT", spec: Spec{Interval: "day", Timezone: "America/New_York", Offset: 2*time.Hour + 30*time.Minute}, after: "2026-03-07T12:00:00Z", upTo: "2026-03-09T12:00:00Z",
			want: "2026-03-08T07:30:00Z 2026-03-09T06:30:00Z"},
		{name: "day NY offset 01:30 on fall back is the first 01:30 (EDT)", spec: Spec{Interval: "day", Timezone: "America/New_York", Offset: time.Hour + 30*time.Minute}, after: "2026-10-31T12:00:00Z", upTo: "2026-11-02T12:00:00Z",
			want: "2026-11-01T05:30:00Z 2026-11-02T06:30:00Z"},
		{name: "day Paris across spring forward", spec: Spec{Interval: "day", Timezone: "Europe/Paris"}, after: "2026-03-28T00:00:00Z", upTo: "2026-03-31T00:00:00Z",
			want: "2026-03-28T23:00:00Z 2026-03-29T22:00:00Z 2026-03-30T22:00:00Z"},
		{name: "week UTC Sunday midnight", spec: Spec{Interval: "week"}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-31T00:00:00Z",
			want: "2026-01-04T00:00:00Z 2026-01-11T00:00:00Z 2026-01-18T00:00:00Z 2026-01-25T00:00:00Z"},
		{name: "week offset Monday 09:00", spec: Spec{Interval: "week", Offset: 24*time.Hour + 9*time.Hour}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-20T00:00:00Z",
			want: "2026-01-05T09:00:00Z 2026-01-12T09:00:00Z 2026-01-19T09:00:00Z"},
		{name: "week NY across spring forward", spec: Spec{Interval: "week", Timezone: "America/New_York"}, after: "2026-03-01T00:00:00Z", upTo: "2026-03-16T00:00:00Z",
			want: "2026-03-01T05:00:00Z 2026-03-08T05:00:00Z 2026-03-15T04:00:00Z"},
		{name: "clip start and end", spec: Spec{Interval: "hour", StartAt: tp("2026-01-01T10:30:00Z"), EndAt: tp("2026-01-01T15:30:00Z")}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-02T00:00:00Z",
			want: "2026-01-01T12:00:00Z 2026-01-01T13:00:00Z 2026-01-01T14:00:00Z 2026-01-01T15:00:00Z"},
		{name: "clip on boundaries", spec: Spec{Interval: "day", StartAt: tp("2026-01-02T00:00:00Z"), EndAt: tp("2026-01-04T00:00:00Z")}, after: "2026-01-01T00:00:00Z", upTo: "2026-01-10T00:00:00Z",
			want: "2026-01-03T00:00:00Z 2026-01-04T00:00:00Z"},
		{name: "empty when after >= upTo", spec: Spec{Interval: "hour"}, after: "2026-01-01T05:00:00Z", upTo: "2026-01-01T05:00:00Z", want: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.spec.Validate(); err != nil {
				t.Fatal(err)
			}
			got := fmtTimes(c.spec.EndsBetween(utc(c.after), utc(c.upTo)))
			if got != c.want {
				t.Fatalf("EndsBetween\n got: %s\nwant: %s", got, c.want)
			}
		})
	}
}

func TestFortyEightHourlyEnds(t *testing.T) {
	for _, tz := range []string{"UTC", "America/New_York", "Europe/Paris"} {
		s := Spec{Interval: IntervalHour, Timezone: tz}
		ends := s.EndsBetween(utc("2026-06-01T00:00:00Z"), utc("2026-06-03T00:00:00Z"))
		if len(ends) != 48 {
			t.Fatalf("%s: %d ends, want 48", tz, len(ends))
		}
		for i, e := range ends {
			if want := utc("2026-06-01T01:00:00Z").Add(time.Duration(i) * time.Hour); !e.Equal(want) {
				t.Fatalf("%s: end %d = %s, want %s", tz, i, e, want)
			}
			start, end := s.IntervalFor(e)
			if end.Sub(start) != time.Hour {
				t.Fatalf("%s: interval %s..%s", tz, start, end)
			}
		}
	}
}

func TestIntervalForDST(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		end  string
		want time.Duration
	}{
		{"NY spring forward day is 23h", Spec{Interval: "day", Timezone: "America/New_York"}, "2026-03-09T04:00:00Z", 23 * time.Hour},
		{"NY fall back day is 25h", Spec{Interval: "day", Timezone: "America/New_York"}, "2026-11-02T05:00:00Z", 25 * time.Hour},
		{"NY plain day", Spec{Interval: "day", Timezone: "America/New_York"}, "2026-06-02T04:00:00Z", 24 * time.Hour},
		{"Paris spring forward day is 23h", Spec{Interval: "day", Timezone: "Europe/Paris"}, "2026-03-29T22:00:00Z", 23 * time.Hour},
		{"Paris fall back day is 25h", Spec{Interval: "day", Timezone: "Europe/Paris"}, "2026-10-25T23:00:00Z", 25 * time.Hour},
		{"NY week with spring forward", Spec{Interval: "week", Timezone: "America/New_York"}, "2026-03-15T04:00:00Z", 167 * time.Hour},
		{"NY hour across fall back", Spec{Interval: "hour", Timezone: "America/New_York"}, "2026-11-01T06:00:00Z", time.Hour},
		{"UTC 15m", Spec{Interval: "every 15 minutes"}, "2026-01-01T00:15:00Z", 15 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start, end := c.spec.IntervalFor(utc(c.end))
			if got := end.Sub(start); got != c.want {
				t.Fatalf("interval %s..%s lasts %s, want %s", start, end, got, c.want)
			}
			if !end.Equal(utc(c.end)) {
				t.Fatalf("end changed")
			}
		})
	}
}

func TestPeriod(t *testing.T) {
	want := map[string]time.Duration{"hour": time.Hour, "day": 24 * time.Hour, "week": 168 * time.Hour,
		"every 5 minutes": 5 * time.Minute, "every 15 minutes": 15 * time.Minute}
	for iv, d := range want {
		if got := (Spec{Interval: iv}).Period(); got != d {
			t.Errorf("%s: %s", iv, got)
		}
	}
}

func TestNextLastFirst(t *testing.T) {
	day := Spec{Interval: "day"}
	if got := day.FirstEnd(utc("2026-05-05T13:20:00Z")); !got.Equal(utc("2026-05-06T00:00:00Z")) {
		t.Fatalf("FirstEnd = %s", got)
	}
	// Created exactly on a boundary: never runs immediately.
	if got := day.FirstEnd(utc("2026-05-05T00:00:00Z")); !got.Equal(utc("2026-05-06T00:00:00Z")) {
		t.Fatalf("FirstEnd on boundary = %s", got)
	}
	if got := day.LastEnd(utc("2026-05-05T00:00:00Z")); !got.Equal(utc("2026-05-05T00:00:00Z")) {
		t.Fatalf("LastEnd on boundary = %s", got)
	}
	if got := day.LastEnd(utc("2026-05-05T13:00:00Z")); !got.Equal(utc("2026-05-05T00:00:00Z")) {
		t.Fatalf("LastEnd = %s", got)
	}
	ny := Spec{Interval: "day", Timezone: "America/New_York", Offset: time.Hour}
	if got := ny.Next(utc("2026-03-08T12:00:00Z")); !got.Equal(utc("2026-03-09T05:00:00Z")) {
		t.Fatalf("NY Next = %s", got)
	}
	bounded := Spec{Interval: "hour", StartAt: tp("2026-01-01T10:30:00Z"), EndAt: tp("2026-01-01T15:30:00Z")}
	if got := bounded.Next(utc("2026-01-01T00:00:00Z")); !got.Equal(utc("2026-01-01T12:00:00Z")) {
		t.Fatalf("bounded Next before start = %s", got)
	}
	if got := bounded.FirstEnd(utc("2026-01-01T12:10:00Z")); !got.Equal(utc("2026-01-01T13:00:00Z")) {
		t.Fatalf("bounded FirstEnd = %s", got)
	}
	if got := bounded.Next(utc("2026-01-01T15:00:00Z")); !got.IsZero() {
		t.Fatalf("Next after the last end = %s, want zero", got)
	}
	if got := bounded.LastEnd(utc("2026-01-02T00:00:00Z")); !got.Equal(utc("2026-01-01T15:00:00Z")) {
		t.Fatalf("bounded LastEnd = %s", got)
	}
	if got := bounded.LastEnd(utc("2026-01-01T11:59:00Z")); !got.IsZero() {
		t.Fatalf("LastEnd before the first end = %s, want zero", got)
	}
}

func TestCatchUp(t *testing.T) {
	s := Spec{Interval: "hour"}
	cases := []struct {
		name         string
		lastEnd, now string
		window       time.Duration
		want         string
		wantLen      int
		checkLenOnly bool
	}{
		{name: "short outage", lastEnd: "2026-01-01T07:00:00Z", now: "2026-01-01T10:30:00Z", window: 24 * time.Hour,
			want: "2026-01-01T08:00:00Z 2026-01-01T09:00:00Z 2026-01-01T10:00:00Z"},
		{name: "bounded by window", lastEnd: "2026-01-01T00:00:00Z", now: "2026-01-01T10:30:00Z", window: 5 * time.Hour,
			want: "2026-01-01T06:00:00Z 2026-01-01T07:00:00Z 2026-01-01T08:00:00Z 2026-01-01T09:00:00Z 2026-01-01T10:00:00Z"},
		{name: "nothing missed", lastEnd: "2026-01-01T10:00:00Z", now: "2026-01-01T10:30:00Z", window: time.Hour, want: ""},
		{name: "disabled", lastEnd: "2026-01-01T00:00:00Z", now: "2026-01-01T10:30:00Z", window: 0, want: ""},
		{name: "long outage, week window", lastEnd: "2025-01-01T00:00:00Z", now: "2026-01-01T00:00:00Z", window: 7 * 24 * time.Hour, wantLen: 168, checkLenOnly: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CatchUp(s, utc(c.lastEnd), utc(c.now), c.window)
			if c.checkLenOnly {
				if len(got) != c.wantLen {
					t.Fatalf("%d ends, want %d", len(got), c.wantLen)
				}
				return
			}
			if fmtTimes(got) != c.want {
				t.Fatalf("got %s\nwant %s", fmtTimes(got), c.want)
			}
		})
	}
}

func TestCrontab(t *testing.T) {
	cases := map[string]Spec{
		"CRON_TZ=UTC 0 */5 * * * *":            {Interval: "every 5 minutes"},
		"CRON_TZ=UTC 0 */15 * * * *":           {Interval: "every 15 minutes"},
		"CRON_TZ=UTC 30 1/5 * * * *":           {Interval: "every 5 minutes", Offset: 90 * time.Second},
		"CRON_TZ=UTC 0 5/15 * * * *":           {Interval: "every 15 minutes", Offset: 5 * time.Minute},
		"CRON_TZ=UTC 30 15 * * * *":            {Interval: "hour", Offset: 15*time.Minute + 30*time.Second},
		"CRON_TZ=America/New_York 0 0 2 * * *": {Interval: "day", Timezone: "America/New_York", Offset: 2 * time.Hour},
		"CRON_TZ=Europe/Paris 0 0 9 * * 1":     {Interval: "week", Timezone: "Europe/Paris", Offset: 33 * time.Hour},
	}
	for want, s := range cases {
		if got := s.crontab(); got != want {
			t.Errorf("crontab = %q, want %q", got, want)
		}
	}
	_ = mustLoc
}

// Issue 17: a 5- or 15-minute export with an interval_offset was accepted by the API and
// then refused by the scheduler, so it never ran. An offset shifts the boundaries by that
// many seconds and must be smaller than the period, for every interval.
func TestSubHourOffset(t *testing.T) {
	cases := []struct {
		name        string
		spec        Spec
		after, upTo string
		want        string
	}{
		{name: "5m offset 2m", spec: Spec{Interval: Interval5Minutes, Offset: 2 * time.Minute},
			after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T00:15:00Z",
			want: "2026-01-01T00:02:00Z 2026-01-01T00:07:00Z 2026-01-01T00:12:00Z"},
		{name: "5m offset 299s", spec: Spec{Interval: Interval5Minutes, Offset: 299 * time.Second},
			after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T00:10:00Z",
			want: "2026-01-01T00:04:59Z 2026-01-01T00:09:59Z"},
		{name: "15m offset 5m Kolkata", spec: Spec{Interval: Interval15Minutes, Offset: 5 * time.Minute, Timezone: "Asia/Kolkata"},
			after: "2026-01-01T00:00:00Z", upTo: "2026-01-01T01:00:00Z",
			// local 05:35, 05:50, 06:05, 06:20 (UTC+5:30)
			want: "2026-01-01T00:05:00Z 2026-01-01T00:20:00Z 2026-01-01T00:35:00Z 2026-01-01T00:50:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.spec.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got := c.spec.EndsBetween(utc(c.after), utc(c.upTo))
			if fmtTimes(got) != c.want {
				t.Fatalf("got %s\nwant %s", fmtTimes(got), c.want)
			}
			for _, end := range got {
				start, _ := c.spec.IntervalFor(end)
				if d := end.Sub(start); d != c.spec.Period() {
					t.Fatalf("interval ending %s lasts %s", end, d)
				}
			}
		})
	}
	for _, iv := range []string{Interval5Minutes, Interval15Minutes} {
		p := Spec{Interval: iv}.Period()
		err := Spec{Interval: iv, Offset: p}.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != FieldOffset || !strings.Contains(fe.Message, fmt.Sprintf("from 0 to %d", int(p/time.Second)-1)) {
			t.Fatalf("%s offset %s: %v", iv, p, err)
		}
	}
}

// Problems names the field at fault for each problem, all at once.
func TestProblemsNameFields(t *testing.T) {
	s := Spec{Interval: "day", Timezone: "Local", Offset: -time.Second,
		StartAt: tp("2026-02-01T00:00:00Z"), EndAt: tp("2026-01-01T00:00:00Z")}
	var fields []string
	for _, p := range s.Problems() {
		if !errors.Is(p, ErrInvalid) {
			t.Fatalf("%v does not wrap ErrInvalid", p)
		}
		fields = append(fields, p.Field)
	}
	if got := strings.Join(fields, ","); got != "timezone,interval_offset,end_at" {
		t.Fatalf("fields %s", got)
	}
	if ps := (Spec{Interval: "fortnight"}).Problems(); len(ps) != 1 || ps[0].Field != FieldInterval {
		t.Fatal("unknown interval not named")
	}
}
