package control_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sluicehq/sluice/host/control"
)

// TestFirstRunAfterCreation (real clock): an export created within the settle delay after
// an interval end must not run that interval, which ended before the export existed; its
// first run is the first end after its creation (docs/scheduling.md, PostHog's rule). The
// scheduler hands over every end after (registration - settle delay), so an export created
// 1 s after an end used to export the interval before its creation (found by the soak,
// docs/reliability.md). An export whose end comes 2 s after its creation is the control:
// it runs that interval.
func TestFirstRunAfterCreation(t *testing.T) {
	const settle = 4 * time.Second
	e := newEnv(t, "", func(c *control.Config) { c.Clock, c.SettleDelay = clockwork.NewRealClock(), settle })
	create := func(name string, end time.Time) string {
		offset := int(end.Sub(end.Truncate(5*time.Minute)) / time.Second)
		out := e.do("POST", "/api/v1/batch_exports", map[string]any{"name": name, "interval": "every 5 minutes",
			"interval_offset": offset, "destination": map[string]any{"type": "s3", "config": localConfig(name)}}, http.StatusCreated)
		return out["id"].(string)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ended, next := now.Add(-time.Second), now.Add(2*time.Second)
	after := create("created-after-its-end", ended)
	control := create("created-before-its-end", next)
	rs := e.waitRuns(control, "the control's run", allFinished(1))
	if !rs[0].IntervalEnd.Equal(next) {
		t.Fatalf("control: run ends %s, want %s", rs[0].IntervalEnd, next)
	}
	time.Sleep(time.Until(ended.Add(settle + 3*time.Second)))
	if rs := e.runs(after); len(rs) != 0 {
		t.Fatalf("an export created after %s ran %d interval(s), the first [%s, %s): it ended before the export existed",
			ended.Format(time.TimeOnly), len(rs), rs[0].IntervalStart.Format(time.TimeOnly), rs[0].IntervalEnd.Format(time.TimeOnly))
	}
}
