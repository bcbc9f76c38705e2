package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sluicehq/sluice/internal/faultproxy"
)

// FaultConfig sizes a fault scenario: a backfill of Intervals hours through 3 hosts.
type FaultConfig struct {
	Config
	Intervals   int
	PerInterval int
	// The last BigIntervals intervals get BigEvents more events of about 1 KB of random
	// text each: objects of several 5 MiB parts (multipart uploads).
	BigIntervals, BigEvents int
}

// backfillScenario seeds and backfills cfg.Intervals hours into an s3 export writing to
// endpoint (a proxy, or versitygw itself), and returns what to verify.
func backfillScenario(ctx context.Context, s *Scenario, cfg FaultConfig, endpoint string) (ExportSpec, error) {
	h0 := time.Now().UTC().Truncate(time.Hour)
	var ends []time.Time
	for i := cfg.Intervals - 1; i >= 0; i-- {
		ends = append(ends, h0.Add(-time.Duration(i)*time.Hour))
	}
	if _, err := Seed(ctx, s.Env, ends, time.Hour, cfg.PerInterval, 0); err != nil {
		return ExportSpec{}, fmt.Errorf("seed: %w", err)
	}
	if cfg.BigIntervals > 0 {
		if _, err := Seed(ctx, s.Env, ends[len(ends)-min(cfg.BigIntervals, len(ends)):], time.Hour, cfg.BigEvents, 1024); err != nil {
			return ExportSpec{}, fmt.Errorf("seed: %w", err)
		}
	}
	svc := s.Env.Svc
	id, err := s.Client.CreateExport(ctx, map[string]any{"name": "fault-hourly", "interval": "hour",
		"end_at": h0.Format(time.RFC3339), "destination": S3Destination(endpoint, s.Env.Bucket, "hourly", svc.S3Access, svc.S3Secret)})
	if err != nil {
		return ExportSpec{}, err
	}
	if err := s.Client.Backfill(ctx, id, ends[0].Add(-time.Hour), h0); err != nil {
		return ExportSpec{}, err
	}
	return ExportSpec{Name: "hourly backfill", ID: id, Prefix: "hourly", Ends: ends, Interval: time.Hour}, nil
}

// finish waits for the export's runs, then verifies and notes hosts that exited or were
// restarted (a fault scenario never restarts a host).
func finish(ctx context.Context, s *Scenario, rep *Report, cfg FaultConfig, spec ExportSpec) error {
	if !WaitFinished(ctx, s.Client, []ExportSpec{spec}, cfg.Drain) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("runs not finished after %s", cfg.Drain))
	}
	rep.Duration = time.Since(rep.Started)
	for _, h := range s.Cluster.Hosts {
		if starts, _ := h.Counts(); starts != 1 || h.Exited() {
			rep.Crashes++
			rep.Notes = append(rep.Notes, fmt.Sprintf("host %d exited or restarted:\n%s", h.N, h.LogTail(30)))
		}
	}
	return Verify(ctx, s, rep, nil, []ExportSpec{spec})
}

// S3Faults: every S3 request of the hosts goes through an HTTP proxy answering rate of them
// with 500/503/SlowDown (a third of those after the request was carried out), resetting
// 2% and delaying all by up to 100 ms. Every run must complete with exactly one object per
// interval holding its events once, and no multipart upload left open.
func S3Faults(ctx context.Context, svc Services, cfg FaultConfig, rate float64) (Report, error) {
	rep := Report{Config: cfg.Config, Started: time.Now(), Faults: map[string]int64{}}
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--s3-part-size-mib", "5")
	p, err := faultproxy.ListenHTTP(svc.S3Endpoint, faultproxy.HTTPFaults{ErrorRate: rate, AfterFraction: 1.0 / 3,
		ResetRate: 0.02, Latency: 100 * time.Millisecond})
	if err != nil {
		return rep, err
	}
	defer p.Close()
	s, err := StartScenario(ctx, svc, "s3", cfg.Config, nil, nil)
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		return rep, err
	}
	spec, err := backfillScenario(ctx, s, cfg, p.URL())
	if err != nil {
		return rep, err
	}
	err = finish(ctx, s, &rep, cfg, spec)
	st := p.Stats()
	rep.Faults["s3 requests"] = st.Requests
	rep.Faults["s3 errors before the server"] = st.Errors
	rep.Faults["s3 errors after the server carried the request out"] = st.ErrorsAfter
	rep.Faults["s3 connection resets"] = st.Resets
	for code, n := range st.ByCode {
		rep.Faults["s3 error "+code] = n
	}
	return rep, err
}

// PostgresFaults: the hosts reach PostgreSQL through a TCP proxy that drops every
// connection and refuses new ones for outage while runs execute (S3 is slowed so they
// last). The hosts must recover without a restart and every run complete, nothing lost.
func PostgresFaults(ctx context.Context, svc Services, cfg FaultConfig, outage time.Duration, outages int) (Report, error) {
	rep := Report{Config: cfg.Config, Started: time.Now(), Faults: map[string]int64{}}
	slow, err := faultproxy.ListenHTTP(svc.S3Endpoint, faultproxy.HTTPFaults{Latency: 400 * time.Millisecond})
	if err != nil {
		return rep, err
	}
	defer slow.Close()
	s, pg, err := startProxied(ctx, svc, "pg", cfg.Config, true)
	if pg != nil {
		defer pg.Close()
	}
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		return rep, err
	}
	spec, err := backfillScenario(ctx, s, cfg, slow.URL())
	if err != nil {
		return rep, err
	}
	for i := 0; i < outages; i++ {
		if err := waitRunning(ctx, s.Client, spec.ID, 2*time.Minute); err != nil {
			rep.Notes = append(rep.Notes, "outage "+fmt.Sprint(i+1)+": "+err.Error())
			break
		}
		n := pg.Refuse(outage)
		rep.Faults["postgres outages"]++
		rep.Faults["postgres connections dropped"] += int64(n)
		time.Sleep(outage)
	}
	err = finish(ctx, s, &rep, cfg, spec)
	rep.Faults["postgres connections refused during outages"] = pg.Stats().Refused
	return rep, err
}

// ClickHouseFaults: the hosts read ClickHouse through a TCP proxy that drops every
// connection while runs stream their interval (the stream is slowed by latency so the drop
// lands mid-stream). Each run must retry and complete with one object holding its interval
// once: no partial file, no doubled row, no multipart upload left open.
func ClickHouseFaults(ctx context.Context, svc Services, cfg FaultConfig, drops int) (Report, error) {
	rep := Report{Config: cfg.Config, Started: time.Now(), Faults: map[string]int64{}}
	// 5 MiB parts: a big interval's upload is multipart and has parts stored when the
	// stream breaks, so the abort is checked too (no upload left open).
	cfg.ExtraArgs = append(cfg.ExtraArgs, "--s3-part-size-mib", "5")
	s, ch, err := startProxied(ctx, svc, "ch", cfg.Config, false)
	if ch != nil {
		defer ch.Close()
	}
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		return rep, err
	}
	spec, err := backfillScenario(ctx, s, cfg, svc.S3Endpoint)
	if err != nil {
		return rep, err
	}
	ch.SetLatency(5 * time.Millisecond)
	for i := 0; i < drops; i++ {
		if err := waitRunning(ctx, s.Client, spec.ID, 2*time.Minute); err != nil {
			rep.Notes = append(rep.Notes, "drop "+fmt.Sprint(i+1)+": "+err.Error())
			break
		}
		time.Sleep(time.Second + time.Duration(rand.Int64N(int64(2*time.Second)))) // into the stream
		rep.Faults["clickhouse connections dropped mid-stream"] += int64(ch.Drop())
		rep.Faults["clickhouse drops"]++
		time.Sleep(3 * time.Second)
	}
	ch.SetLatency(0)
	err = finish(ctx, s, &rep, cfg, spec)
	return rep, err
}

// startProxied starts a scenario whose hosts reach PostgreSQL (postgres) or ClickHouse
// through a TCP fault proxy, and returns the proxy.
func startProxied(ctx context.Context, svc Services, label string, cfg Config, postgres bool) (*Scenario, *faultproxy.TCP, error) {
	var p *faultproxy.TCP
	via := func(raw string) string {
		var u string
		p, u = viaProxy(raw)
		return u
	}
	var dbURL, chDSN func(*Env) string
	if postgres {
		dbURL = func(e *Env) string { return via(e.PGURL) }
	} else {
		chDSN = func(e *Env) string { return via(e.CHDSN) }
	}
	s, err := StartScenario(ctx, svc, label, cfg, dbURL, chDSN)
	if err == nil && p == nil {
		err = fmt.Errorf("%s: the fault proxy did not start", label)
	}
	return s, p, err
}

// viaProxy starts a TCP proxy to the server of the URL raw and returns it with raw
// pointing at it (nil and raw unchanged when it cannot listen).
func viaProxy(raw string) (*faultproxy.TCP, string) {
	p, err := faultproxy.ListenTCP(hostOf(raw))
	if err != nil {
		return nil, raw
	}
	return p, replaceHost(raw, p.Addr())
}

// waitRunning waits until a run of the export is Running.
func waitRunning(ctx context.Context, c *Client, id string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		runs, _ := c.Runs(ctx, id)
		for _, r := range runs {
			if r.Status == "Running" {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no run Running within %s", d)
}
