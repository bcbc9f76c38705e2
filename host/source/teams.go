package source

import (
	"context"
	"fmt"
	"slices"
)

// TeamLister is implemented by sources that can say which teams (PostHog projects) they
// hold events of. PostHog's events table is multi-tenant: an export that does not name its
// team (Query.TeamID) reads every team's rows, so the API requires a team as soon as the
// source holds more than one.
type TeamLister interface {
	// TeamIDs returns up to max distinct team ids present in the source, ascending
	// (max <= 0: all of them). Use a small max to ask "more than one team?".
	TeamIDs(ctx context.Context, max int) ([]int64, error)
}

// TeamIDs implements TeamLister. With max > 0 it asks for one new team at a time
// (team_id NOT IN (the ones found) LIMIT 1): on PostHog's table, sorted by team_id first,
// each query skips the known teams' granules through the primary index instead of reading
// them, so "more than one team?" costs two small reads however large the table is.
func (s *ClickHouse) TeamIDs(ctx context.Context, max int) ([]int64, error) {
	team := s.c.teamID
	if max <= 0 {
		return s.teamQuery(ctx, "SELECT DISTINCT toInt64("+team+") FROM "+s.table, nil)
	}
	var out []int64
	for len(out) < max {
		q := "SELECT toInt64(" + team + ") FROM " + s.table
		var args []any
		if len(out) > 0 {
			q += " WHERE " + team + " NOT IN (" + placeholders(len(out)) + ")"
			for _, id := range out {
				args = append(args, id)
			}
		}
		found, err := s.teamQuery(ctx, q+" LIMIT 1", args)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			break
		}
		out = append(out, found[0])
	}
	slices.Sort(out)
	return out, nil
}

func (s *ClickHouse) teamQuery(ctx context.Context, q string, args []any) ([]int64, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("source: clickhouse teams: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("source: clickhouse teams: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source: clickhouse teams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// TeamIDs implements TeamLister.
func (s *SQLite) TeamIDs(ctx context.Context, max int) ([]int64, error) {
	if max <= 0 {
		max = -1 // no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT team_id FROM events ORDER BY team_id LIMIT ?`, max)
	if err != nil {
		return nil, fmt.Errorf("source: sqlite teams: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("source: sqlite teams: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source: sqlite teams: %w", err)
	}
	return out, nil
}

var (
	_ TeamLister = (*ClickHouse)(nil)
	_ TeamLister = (*SQLite)(nil)
)
