package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/schedule"
)

// scheduleOf parses a stored export's schedule exactly as host/control does before
// registering it with the scheduler.
func scheduleOf(t *testing.T, e *env, id string) error {
	t.Helper()
	x := e.exportRow(id)
	_, err := schedule.Parse(x.Interval, x.Timezone, time.Duration(x.IntervalOffset)*time.Second, x.StartAt, x.EndAt)
	return err
}

// Issue 17: a 5- or 15-minute export with an interval_offset was created (201) and then
// refused by the scheduler, so it never ran. An offset below the period is now valid for
// every interval and schedules.
func TestSubHourOffsetSchedules(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	for _, c := range []struct {
		interval string
		offset   int
	}{{"every 5 minutes", 120}, {"every 5 minutes", 299}, {"every 15 minutes", 300}, {"every 15 minutes", 899}} {
		r := e.must("POST", "/api/v1/batch_exports", with("interval", c.interval, "interval_offset", c.offset), http.StatusCreated)
		m := r.json(t)
		if m["interval_offset"] != float64(c.offset) {
			t.Fatalf("%s offset %d: answered %v", c.interval, c.offset, m["interval_offset"])
		}
		if err := scheduleOf(t, e, m["id"].(string)); err != nil {
			t.Fatalf("%s offset %d: accepted by the API, refused by the scheduler: %v", c.interval, c.offset, err)
		}
	}
	// At or past the period: a 400 naming the field.
	for _, c := range []struct {
		interval string
		offset   int
		msg      string
	}{{"every 5 minutes", 300, "from 0 to 299"}, {"every 15 minutes", 900, "from 0 to 899"}} {
		r := e.do("POST", "/api/v1/batch_exports", with("interval", c.interval, "interval_offset", c.offset))
		ae := r.err(t)
		if r.Status != http.StatusBadRequest || !slices.Equal(ae.fieldNames(), []string{"interval_offset"}) || !strings.Contains(ae.text(), c.msg) {
			t.Fatalf("%s offset %d: %d %s", c.interval, c.offset, r.Status, r.Body)
		}
	}
}

// Whatever the API accepts, the scheduler accepts, and the API refuses what the scheduler
// refuses (one rule: schedule.Spec.Problems), for create and for PATCH.
func TestAPIScheduleAgreesWithScheduler(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	target := e.export("patched")
	offsets := []int{-1, 0, 59, 60, 299, 300, 899, 900, 3599, 3600, 86399, 86400, 604799, 604800}
	zones := []string{"UTC", "Asia/Kolkata", "America/New_York", "Local", "Mars/Olympus"}
	for _, iv := range append(slices.Clone(schedule.Intervals), "Every 5 Minutes", "fortnight") {
		for _, off := range offsets {
			for _, tz := range zones {
				name := fmt.Sprintf("%s/%d/%s", iv, off, tz)
				_, perr := schedule.Parse(iv, tz, time.Duration(off)*time.Second, nil, nil)
				r := e.do("POST", "/api/v1/batch_exports", with("interval", iv, "interval_offset", off, "timezone", tz))
				if (r.Status == http.StatusCreated) != (perr == nil) {
					t.Fatalf("%s: API %d %s, scheduler %v", name, r.Status, r.Body, perr)
				}
				if r.Status == http.StatusCreated {
					if err := scheduleOf(t, e, r.json(t)["id"].(string)); err != nil {
						t.Fatalf("%s: stored export does not schedule: %v", name, err)
					}
				} else if r.Status != http.StatusBadRequest {
					t.Fatalf("%s: status %d %s", name, r.Status, r.Body)
				}
				p := e.do("PATCH", "/api/v1/batch_exports/"+target, map[string]any{"interval": iv, "interval_offset": off, "timezone": tz})
				if (p.Status == http.StatusOK) != (perr == nil) {
					t.Fatalf("PATCH %s: API %d %s, scheduler %v", name, p.Status, p.Body, perr)
				}
				if err := scheduleOf(t, e, target); err != nil {
					t.Fatalf("PATCH %s left an export that does not schedule: %v", name, err)
				}
			}
		}
	}
}

// teamControl is fakeControl whose event source holds the given teams.
type teamControl struct {
	*fakeControl
	teams []int64
	err   error
}

func (c teamControl) SourceTeamIDs(_ context.Context, max int) ([]int64, error) {
	return c.teams[:min(max, len(c.teams))], c.err
}

var _ api.TeamLister = teamControl{}

// Issue 17: an export can be scoped to one team (PostHog's team_id); the team is stored
// where host/control's queryFor reads it (filters.team_id) so it is pushed into the query.
func TestExportTeamID(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	r := e.must("POST", "/api/v1/batch_exports", with("team_id", 2, "filters", map[string]any{"include_events": []string{"$pageview"}}), http.StatusCreated)
	m := r.json(t)
	id := m["id"].(string)
	if m["team_id"] != float64(2) {
		t.Fatalf("team_id answered %v", m["team_id"])
	}
	stored := func() (f struct {
		IncludeEvents []string `json:"include_events"`
		TeamID        *int64   `json:"team_id"`
	}) {
		if err := json.Unmarshal([]byte(e.exportRow(id).Filters), &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := stored(); f.TeamID == nil || *f.TeamID != 2 || !slices.Equal(f.IncludeEvents, []string{"$pageview"}) {
		t.Fatalf("stored filters %s", e.exportRow(id).Filters)
	}
	// PATCHing the filters keeps the team; PATCHing the team keeps the filters.
	e.must("PATCH", "/api/v1/batch_exports/"+id, `{"filters": {"exclude_events": ["x"]}}`, http.StatusOK)
	if f := stored(); f.TeamID == nil || *f.TeamID != 2 {
		t.Fatalf("filters PATCH lost the team: %s", e.exportRow(id).Filters)
	}
	r = e.must("PATCH", "/api/v1/batch_exports/"+id, `{"team_id": 7}`, http.StatusOK)
	if m := r.json(t); m["team_id"] != float64(7) || !strings.Contains(e.exportRow(id).Filters, `"exclude_events":["x"]`) {
		t.Fatalf("team PATCH: %s / %s", r.Body, e.exportRow(id).Filters)
	}
	r = e.must("PATCH", "/api/v1/batch_exports/"+id, `{"team_id": null}`, http.StatusOK)
	if m := r.json(t); m["team_id"] != nil || stored().TeamID != nil {
		t.Fatalf("team_id null: %s / %s", r.Body, e.exportRow(id).Filters)
	}
	for _, bad := range []any{0, -3, 1.5, "2", true} {
		r := e.do("POST", "/api/v1/batch_exports", with("team_id", bad))
		if r.Status != http.StatusBadRequest || !slices.Equal(r.err(t).fieldNames(), []string{"team_id"}) {
			t.Fatalf("team_id %v: %d %s", bad, r.Status, r.Body)
		}
	}
	// One way to say it: the team is top-level, not a filter.
	if r := e.do("POST", "/api/v1/batch_exports", with("filters", map[string]any{"team_id": 2})); r.Status != http.StatusBadRequest {
		t.Fatalf("filters.team_id: %d %s", r.Status, r.Body)
	}
}

// On a multi-tenant source, an export without team_id would export every team's events:
// team_id is required there (create and PATCH), and optional on a single-team source.
func TestExportTeamIDRequiredOnMultiTenantSource(t *testing.T) {
	e := newEnv(t)
	e.plugin(s3Manifest)
	single := e.export("before") // no team, created while the source has one team
	use := func(ctl api.Controller) {
		srv := api.New(api.Config{AdminToken: adminToken, Now: func() time.Time { return now }}, api.Deps{DB: e.db, Control: ctl})
		e.srv, e.h = srv, srv.Handler()
	}
	use(teamControl{fakeControl: e.ctl, teams: []int64{1}})
	e.must("POST", "/api/v1/batch_exports", s3Body("one-team"), http.StatusCreated)

	use(teamControl{fakeControl: e.ctl, teams: []int64{1, 2, 3}})
	r := e.do("POST", "/api/v1/batch_exports", s3Body("no-team"))
	if r.Status != http.StatusBadRequest || !slices.Equal(r.err(t).fieldNames(), []string{"team_id"}) || !strings.Contains(r.err(t).text(), "required") {
		t.Fatalf("no team on a multi-tenant source: %d %s", r.Status, r.Body)
	}
	e.must("POST", "/api/v1/batch_exports", with("team_id", 2), http.StatusCreated)
	// An older unscoped export must be scoped before anything else changes.
	if r := e.do("PATCH", "/api/v1/batch_exports/"+single, `{"name": "renamed"}`); r.Status != http.StatusBadRequest {
		t.Fatalf("PATCH of an unscoped export: %d %s", r.Status, r.Body)
	}
	e.must("PATCH", "/api/v1/batch_exports/"+single, `{"team_id": 3}`, http.StatusOK)
	if r := e.do("PATCH", "/api/v1/batch_exports/"+single, `{"team_id": null}`); r.Status != http.StatusBadRequest {
		t.Fatalf("clearing the team on a multi-tenant source: %d %s", r.Status, r.Body)
	}
	// A source that cannot answer: refuse (500) rather than create an unscoped export.
	use(teamControl{fakeControl: e.ctl, err: fmt.Errorf("clickhouse down")})
	if r := e.do("POST", "/api/v1/batch_exports", s3Body("unknown")); r.Status != http.StatusInternalServerError {
		t.Fatalf("source error: %d %s", r.Status, r.Body)
	}
}
