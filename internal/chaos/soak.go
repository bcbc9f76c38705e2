package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sample is one reading of one host.
type Sample struct {
	At         time.Time
	Host       int
	RSS        int64 // bytes, /proc/<pid>/status VmRSS
	Goroutines int64 // go_goroutines from /metrics
	Pid        int
}

// SampleHosts reads every running host's RSS and goroutine count every period until ctx
// ends (period <= 0: never).
func SampleHosts(ctx context.Context, c *Cluster, period time.Duration) []Sample {
	if period <= 0 {
		<-ctx.Done()
		return nil
	}
	var out []Sample
	client := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		for _, h := range c.Hosts {
			rss, err := h.RSS()
			if err != nil {
				continue
			}
			g, err := goroutines(ctx, client, h.URL())
			if err != nil {
				continue
			}
			out = append(out, Sample{At: time.Now(), Host: h.N, RSS: rss, Goroutines: g, Pid: h.Pid()})
		}
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
	}
}

func goroutines(ctx context.Context, client *http.Client, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in %s/metrics", base)
}

// Growth compares, per host, the first third of the samples (after warmup) with the last
// third. A host grows without bound when the *minimum* of the last third is above the
// *maximum* of the first third by more than 10% and 16 MiB (RSS), or 10% and 10
// (goroutines): a leak lifts the whole last third above everything seen early on, while a
// steady host plateaus, and a run's one-off step (a plugin instance's memory, Go's heap
// target) comes back down or stays flat. The maxima are reported too.
type Growth struct {
	Host                            int
	Samples                         int
	RSSFirst, RSSLast               int64 // bytes: max of the first third, min of the last
	RSSLastMax                      int64
	GoroutinesFirst, GoroutinesLast int64 // max of the first third, min of the last
	GoroutinesLastMax               int64
}

// Unbounded reports whether g meets the growth criterion.
func (g Growth) Unbounded() bool {
	rss := g.RSSLast > g.RSSFirst+g.RSSFirst/10 && g.RSSLast-g.RSSFirst > 16<<20
	gor := g.GoroutinesLast > g.GoroutinesFirst+g.GoroutinesFirst/10 && g.GoroutinesLast-g.GoroutinesFirst > 10
	return rss || gor
}

func (g Growth) String() string {
	return fmt.Sprintf("host %d: %d samples, RSS first-third max %.1f MiB, last-third min %.1f MiB (max %.1f MiB); goroutines first-third max %d, last-third min %d (max %d)",
		g.Host, g.Samples, float64(g.RSSFirst)/(1<<20), float64(g.RSSLast)/(1<<20), float64(g.RSSLastMax)/(1<<20),
		g.GoroutinesFirst, g.GoroutinesLast, g.GoroutinesLastMax)
}

// Growths computes Growth per host from samples taken after warmup.
func Growths(samples []Sample, warmup time.Duration) []Growth {
	if len(samples) == 0 {
		return nil
	}
	start := samples[0].At.Add(warmup)
	byHost := map[int][]Sample{}
	var hosts []int
	for _, s := range samples {
		if s.At.Before(start) {
			continue
		}
		if _, ok := byHost[s.Host]; !ok {
			hosts = append(hosts, s.Host)
		}
		byHost[s.Host] = append(byHost[s.Host], s)
	}
	var out []Growth
	for _, h := range hosts {
		ss := byHost[h]
		n := len(ss) / 3
		if n == 0 {
			continue
		}
		g := Growth{Host: h, Samples: len(ss)}
		for _, s := range ss[:n] {
			g.RSSFirst, g.GoroutinesFirst = max(g.RSSFirst, s.RSS), max(g.GoroutinesFirst, s.Goroutines)
		}
		g.RSSLast, g.GoroutinesLast = ss[len(ss)-n].RSS, ss[len(ss)-n].Goroutines
		for _, s := range ss[len(ss)-n:] {
			g.RSSLast, g.GoroutinesLast = min(g.RSSLast, s.RSS), min(g.GoroutinesLast, s.Goroutines)
			g.RSSLastMax, g.GoroutinesLastMax = max(g.RSSLastMax, s.RSS), max(g.GoroutinesLastMax, s.Goroutines)
		}
		out = append(out, g)
	}
	return out
}

// SoakConfig is a soak: live capture and 5-minute exports for Duration, no kills.
func SoakConfig(d time.Duration) Config {
	cfg := Short()
	cfg.Kills, cfg.BackfillIntervals = 0, 0
	cfg.LiveIntervals = max(1, int((d+live-1)/live))
	cfg.SettleDelay = 10 * time.Second
	cfg.LiveLead = d - time.Duration(cfg.LiveIntervals-1)*live
	// Created within the settle delay after an interval end, the export would also run
	// that interval (see docs/reliability.md, "Bugs and gaps found"): keep the previous end
	// well before the creation.
	cfg.LiveLead = min(cfg.LiveLead, live-cfg.SettleDelay-30*time.Second)
	cfg.CaptureRate = 50
	cfg.Sample = 10 * time.Second
	return cfg
}
