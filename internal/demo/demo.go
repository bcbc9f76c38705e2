// Package demo generates realistic synthetic PostHog-style events, so that a newcomer's
// `make run` exports real files within a minute, and benchmarks have data of a known shape.
package demo

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/sluicehq/sluice/abi"
)

var (
	eventNames = []string{"$pageview", "$pageview", "$pageview", "$autocapture", "$pageleave", "signed_up", "purchase", "$identify"}
	paths      = []string{"/", "/pricing", "/docs/getting-started", "/blog/batch-exports", "/signup", "/app/dashboard", "/app/settings"}
	browsers   = []string{"Chrome", "Firefox", "Safari", "Edge"}
	oses       = []string{"Mac OS X", "Windows", "Linux", "iOS", "Android"}
	countries  = []string{"FR", "US", "DE", "BR", "IN", "JP", "GB"}
)

// Events returns n events whose inserted_at values are spread evenly over [start, end) and
// whose event timestamps are a few seconds to minutes earlier. seed makes it repeatable.
func Events(n int, start, end time.Time, seed uint64) []abi.Event {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]abi.Event, n)
	span := end.Sub(start)
	for i := range out {
		ins := start.Add(time.Duration(int64(span) / int64(max(n, 1)) * int64(i)))
		out[i] = One(r, ins)
	}
	return out
}

// One returns one event inserted at ins.
func One(r *mrand.Rand, ins time.Time) abi.Event {
	var id, pid [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	user := r.IntN(500)
	pid[0], pid[1], pid[15] = byte(user>>8), byte(user), 0x42
	ts := ins.Add(-time.Duration(r.IntN(120_000)) * time.Millisecond)
	path := paths[r.IntN(len(paths))]
	props := map[string]any{
		"$current_url":     "https://example.com" + path,
		"$pathname":        path,
		"$browser":         browsers[r.IntN(len(browsers))],
		"$browser_version": 100 + r.IntN(30),
		"$os":              oses[r.IntN(len(oses))],
		"$device_type":     []string{"Desktop", "Mobile", "Tablet"}[r.IntN(3)],
		"$geoip_country":   countries[r.IntN(len(countries))],
		"$referrer":        "https://www.google.com/",
		"$session_id":      fmt.Sprintf("%08x-session", r.Uint32()),
		"$lib":             "web",
		"$lib_version":     "1.200.0",
		"plan":             []string{"free", "pro", "enterprise"}[r.IntN(3)],
		"$screen_height":   800 + r.IntN(600),
		"$screen_width":    1200 + r.IntN(1400),
	}
	pb, _ := json.Marshal(props)
	pp := fmt.Sprintf(`{"email":"user%d@example.com","name":"User %d"}`, user, user)
	created := ins.Add(-time.Duration(r.IntN(500)) * time.Millisecond)
	return abi.Event{
		UUID: id, Event: eventNames[r.IntN(len(eventNames))], DistinctID: fmt.Sprintf("user-%d", user),
		PersonID: &pid, TeamID: 1, Properties: string(pb), PersonProperties: &pp,
		ElementsChain: "", Timestamp: ts.UTC(), CreatedAt: &created, InsertedAt: ins.UTC(),
	}
}
