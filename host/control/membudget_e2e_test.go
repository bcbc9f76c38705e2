package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/host/control"
	"github.com/sluicehq/sluice/host/membudget"
)

// A run waits for memory budget before it executes, says so in its log, goes on when the
// budget is released, and a cancel ends its wait.
func TestRunWaitsForMemoryBudget(t *testing.T) {
	budget := membudget.New(membudget.Plan{Runs: 1 << 20, PerRun: 1 << 20}) // one run at a time
	e := newEnv(t, "", func(c *control.Config) { c.Memory = budget })
	// The test holds the only allowance, as a long run would.
	held, err := budget.Admit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := e.createExport("budget", localConfig("budget"))
	end := t0.Truncate(time.Hour)
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": end.Add(-time.Hour).Format(time.RFC3339), "end_at": end.Format(time.RFC3339)}, http.StatusCreated)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (budget %+v)", what, budget.Stats())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	logOf := func(runID string) string {
		logs := e.do("GET", "/api/v1/batch_exports/"+id+"/runs/"+runID+"/logs", nil, http.StatusOK)
		b, _ := json.Marshal(logs)
		return string(b)
	}
	waitFor("the run to wait", func() bool { return budget.Stats().Waiting == 1 })
	rs := e.runs(id)
	if len(rs) != 1 || rs[0].Status == "Completed" {
		t.Fatalf("runs while the budget is held: %+v", rs)
	}
	waitFor("the waiting log line", func() bool { return strings.Contains(logOf(rs[0].ID), "waiting for memory budget") })
	// Still waiting after a while: nothing else admits it.
	time.Sleep(300 * time.Millisecond)
	if s := budget.Stats(); s.Waiting != 1 || s.Reserved != 1<<20 {
		t.Fatalf("budget while held: %+v", s)
	}
	held()
	rs = e.waitRuns(id, "the run after the budget is released", allFinished(1))
	if rs[0].Status != "Completed" || rs[0].RecordsCompleted != e.countIn(end.Add(-time.Hour), end) {
		t.Fatalf("run after the wait: %+v", rs[0])
	}
	if s := budget.Stats(); s.Reserved != 0 || s.Waiting != 0 || s.Waits != 1 {
		t.Fatalf("budget after the run: %+v", s)
	}

	// A cancel reaches a run waiting for budget.
	held, err = budget.Admit(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	e.do("POST", "/api/v1/batch_exports/"+id+"/backfills",
		map[string]any{"start_at": end.Add(-2 * time.Hour).Format(time.RFC3339), "end_at": end.Add(-time.Hour).Format(time.RFC3339)}, http.StatusCreated)
	waitFor("the second run to wait", func() bool { return budget.Stats().Waiting == 1 })
	var second string
	for _, r := range e.runs(id) {
		if r.IntervalEnd.Equal(end.Add(-time.Hour)) {
			second = r.ID
		}
	}
	e.do("POST", fmt.Sprintf("/api/v1/batch_exports/%s/runs/%s/cancel", id, second), nil, http.StatusAccepted)
	rs = e.waitRuns(id, "the cancelled run", allFinished(2))
	for _, r := range rs {
		if r.ID == second && r.Status != "Cancelled" {
			t.Fatalf("cancelled while waiting: %+v", r)
		}
	}
	waitFor("the cancelled run to leave the line", func() bool { return budget.Stats().Waiting == 0 })
	if s := budget.Stats(); s.Reserved != 1<<20 {
		t.Fatalf("budget after the cancel: %+v (only the test's allowance should be held)", s)
	}
}
