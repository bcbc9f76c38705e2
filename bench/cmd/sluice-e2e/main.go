// Command sluice-e2e measures Sluice end to end on one machine (see bench/e2e.sh, which
// starts the servers and builds the binaries):
//
//   - load: N demo events (internal/demo, PostHog-shaped, ~500 bytes) into a ClickHouse
//     events table (PostHog's schema in 18.16 types), each data set in its own hourly
//     interval of inserted_at;
//   - e2e: a real `sluice serve` process (ClickHouse source, first-party s3 plugin, JSON
//     Lines + gzip, to a loopback S3 server) exporting one interval through the REST API
//     (export + backfill), timed from the backfill request to the run Completed, against
//     `clickhouse-client --query "SELECT ... FORMAT JSONEachRow" | gzip -1` on the same rows,
//     alternating, several repetitions;
//   - rss: one fresh `sluice serve` per interval size, VmRSS sampled every 100 ms from
//     /proc/<pid>/status, VmHWM read at the end, Go heap sampled from /metrics.
//
// Everything stays on 127.0.0.1: the ClickHouse DSN and the S3 endpoint must be loopback.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/bench"
	"github.com/sluicehq/sluice/internal/demo"
)

// PostHog's events table in ClickHouse 18.16 types (as host/source/clickhouse_test.go).
const eventsDDL = `CREATE TABLE %s (
	uuid UUID,
	event String,
	properties String,
	timestamp DateTime('UTC'),
	team_id Int64,
	distinct_id String,
	elements_chain String,
	created_at DateTime('UTC'),
	person_id UUID,
	person_properties String,
	inserted_at Nullable(DateTime('UTC')),
	_timestamp DateTime,
	_offset UInt64
) ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(toString(uuid)))`

// base is the first data set's interval; data set i lives in [base+i h, base+(i+1) h).
// Fixed, so a kept table (-keep) is reused by the next invocation.
var base = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

type config struct {
	dsn, db, chSettings        string
	s3Endpoint, access, secret string
	sluice, pluginsDir, lock   string
	work                       string
	e2eEvents                  int
	reps                       int
	rss                        []int
	loadWorkers                int
	keep, skipE2E, skipPlain   bool
	skipSame                   bool
	profileOut, profileBin     string
	profileSeconds             int
	profileAddr                string // set on the profiled run only
	lightPoll                  bool   // e2e timing: poll the run every 200 ms, no /metrics sampling
	variants                   []variant
	sluiceEnv                  []string
	label                      string
	throttle                   float64  // MB/s per connection to S3, 0: none
	exports                    int      // RSS runs: exports backfilling the same interval at once
	sluiceArgs                 []string // extra arguments of sluice serve
	dests                      []string // RSS runs: stores exported to in turn, "s3", "azure"
	azureConn                  string   // Azurite connection string
}

func main() {
	var c config
	var rss, senv string
	flag.StringVar(&c.dsn, "dsn", envOr("SLUICE_TEST_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000/default"), "ClickHouse native DSN (its database is replaced by -db)")
	flag.StringVar(&c.db, "db", "sluice_bench", "ClickHouse database holding the events table (created, dropped at the end unless -keep)")
	flag.StringVar(&c.chSettings, "ch-settings", "max_bytes_before_external_sort=2000000000", "ClickHouse settings for both Sluice's source (DSN parameters) and clickhouse-client (k=v&k=v)")
	flag.StringVar(&c.s3Endpoint, "s3-endpoint", os.Getenv("SLUICE_TEST_S3_ENDPOINT"), "loopback S3 endpoint (versitygw)")
	flag.StringVar(&c.access, "s3-access", os.Getenv("SLUICE_TEST_S3_ACCESS_KEY"), "S3 access key")
	flag.StringVar(&c.secret, "s3-secret", os.Getenv("SLUICE_TEST_S3_SECRET_KEY"), "S3 secret key")
	flag.StringVar(&c.sluice, "sluice", "bin/sluice", "sluice binary")
	flag.StringVar(&c.pluginsDir, "plugins-dir", "bin/plugins", "built first-party plugins")
	flag.StringVar(&c.lock, "lock", "plugins.lock", "plugins.lock")
	flag.StringVar(&c.work, "work", "", "scratch directory for sluice data dirs (default: a temp dir, removed)")
	flag.IntVar(&c.e2eEvents, "e2e-events", 2_000_000, "events in the interval timed against clickhouse-client")
	flag.IntVar(&c.reps, "reps", 3, "e2e repetitions (each: sluice, then the clickhouse-client dumps, alternating the order)")
	flag.StringVar(&rss, "rss", "2000000,5000000,10000000", "event counts of the intervals whose export's peak RSS is measured (empty: none)")
	flag.IntVar(&c.loadWorkers, "load-workers", 2, "concurrent generators/inserters while loading")
	flag.BoolVar(&c.keep, "keep", false, "keep the ClickHouse database (the next run reuses the intervals already loaded)")
	flag.BoolVar(&c.skipE2E, "skip-e2e", false, "skip the e2e comparison")
	flag.BoolVar(&c.skipPlain, "skip-plain", false, "e2e: skip the plain (unsorted) clickhouse-client dump")
	flag.BoolVar(&c.skipSame, "skip-same", false, "e2e: skip the clickhouse-client dump of Sluice's own (sorted) query")
	flag.StringVar(&c.profileOut, "profile", "", "e2e: after the reps, export once more with the first variant's settings and -profile-bin, and write a CPU profile of sluice serve to this file")
	flag.StringVar(&c.profileBin, "profile-bin", "", "sluice built with net/http/pprof on SLUICE_BENCH_PPROF_ADDR (bench/e2e.sh builds it)")
	flag.IntVar(&c.profileSeconds, "profile-seconds", 0, "length of the CPU profile, from the backfill request (0: the first variant's median time in the reps, so that it covers the export; idle time adds no samples)")
	var vspecs []string
	flag.Func("variant", "e2e: a sluice configuration timed in each repetition, name[@binary][:K=V,K=V] (repeatable; default one, \"sluice\"); the first is the reference of the speed-ups", func(s string) error {
		vspecs = append(vspecs, s)
		return nil
	})
	flag.StringVar(&senv, "sluice-env", "", "extra environment of sluice serve, comma-separated K=V (e.g. GOMEMLIMIT=200MiB)")
	flag.StringVar(&c.label, "label", "", "label printed with the RSS rows")
	flag.Float64Var(&c.throttle, "s3-throttle", 0, "RSS runs: send sluice's S3 traffic through a loopback proxy limiting each connection's upload to this many MB/s (a slow S3)")
	flag.IntVar(&c.exports, "exports", 1, "RSS runs: this many exports backfill the same interval at once (one run each, in one process; run with --backfill-parallelism >= this in -sluice-args to run them all at once)")
	var sargs string
	var dests string
	flag.StringVar(&dests, "dest", "s3", "RSS runs: the stores exported to, in turn for each size, comma-separated: s3 (versitygw, s3 plugin), azure (Azurite, azure-blob plugin); the e2e comparison uses the first")
	flag.StringVar(&c.azureConn, "azure-conn", os.Getenv("SLUICE_TEST_AZURITE_CONNECTION_STRING"), "Azurite connection string (-dest azure)")
	flag.StringVar(&sargs, "sluice-args", "", "extra arguments of sluice serve, space-separated (e.g. --backfill-parallelism 4)")
	flag.Parse()
	c.sluiceArgs = strings.Fields(sargs)
	if c.exports < 1 {
		c.exports = 1
	}
	for _, f := range strings.Split(rss, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseFloat(f, 64)
		check(err)
		c.rss = append(c.rss, int(n))
	}
	if senv != "" {
		c.sluiceEnv = strings.Split(senv, ",")
	}
	for _, s := range vspecs {
		v, err := parseVariant(s, c.sluice)
		check(err)
		c.variants = append(c.variants, v)
	}
	_ = os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	check(loopback(c.dsn, "dsn"))
	check(loopback(c.s3Endpoint, "s3-endpoint"))
	for _, d := range strings.Split(dests, ",") {
		switch d = strings.TrimSpace(d); d {
		case "s3":
		case "azure":
			check(loopback(azureEndpoint(c.azureConn), "azure-conn BlobEndpoint"))
		default:
			check(fmt.Errorf("-dest %q: want s3 or azure", d))
		}
		c.dests = append(c.dests, d)
	}
	if c.work == "" {
		d, err := os.MkdirTemp("", "sluice-e2e-")
		check(err)
		defer os.RemoveAll(d)
		c.work = d
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-e2e:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	conn, err := chOpen(c.dsn, "default")
	if err != nil {
		return err
	}
	defer conn.Close()
	if !c.keep {
		defer func() {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+c.db)
			fmt.Printf("== dropped ClickHouse database %s\n", c.db)
		}()
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+c.db); err != nil {
		return err
	}
	if err := conn.Exec(ctx, fmt.Sprintf(strings.Replace(eventsDDL, "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1), c.db+".events")); err != nil {
		return err
	}
	// Data sets: the e2e interval first, then every RSS size (reusing the e2e interval when
	// the counts match).
	sizes := []int{}
	if !c.skipE2E {
		sizes = append(sizes, c.e2eEvents)
	}
	for _, n := range c.rss {
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	sets := map[int]dataset{}
	for _, n := range sizes {
		d, err := ensureLoaded(ctx, conn, c, n)
		if err != nil {
			return err
		}
		sets[n] = d
	}
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(c.s3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(c.access, c.secret, "")})
	stores := map[string]store{"s3": s3Store{s3c}, "azure": azureStore{c.azureConn}}
	first := stores[c.dests[0]]

	// One shared wazero compilation cache, so that each fresh process starts from compiled
	// plugins like a long-running server (compiling is not what is measured).
	cache := filepath.Join(c.work, "wazero-cache")
	if err := warmUp(c, cache); err != nil {
		return err
	}
	if !c.skipE2E {
		if err := e2e(ctx, c, first, sets[c.e2eEvents], cache); err != nil {
			return err
		}
	}
	if len(c.rss) > 0 && c.throttle > 0 {
		direct := c.s3Endpoint
		p, err := throttleProxy(direct, c.throttle*1e6)
		if err != nil {
			return err
		}
		c.s3Endpoint = p
		fmt.Printf("\n== S3 traffic of sluice goes through %s: uploads limited to %.1f MB/s per connection\n", p, c.throttle)
	}
	if len(c.rss) > 0 {
		fmt.Printf("\n== peak RSS of sluice serve exporting one interval with %d export(s) at once (fresh process per size; %s; %s)\n", c.exports, c.label, c.sluice)
		rows := map[string][]rssRow{}
		for _, n := range c.rss {
			for _, dest := range c.dests {
				r, err := sluiceRun(ctx, c, stores[dest], sets[n], cache)
				if err != nil {
					return err
				}
				rows[dest] = append(rows[dest], rssRow{sets[n], r})
				fmt.Printf("   %s, %d events: %.1fs, CPU %.1fs, VmHWM %s (before backfill %s), peak sampled VmRSS %s (anon %s, file %s), Go HeapInuse peak %s, Sys peak %s, load %s\n",
					dest, n, r.elapsed.Seconds(), r.cpu.Seconds(), mib(r.hwmAfter), mib(r.hwmBefore), mib(r.rssPeak), mib(r.anonAtPeak), mib(r.fileAtPeak), mib(r.heapPeak), mib(r.sysPeak), bench.LoadAvg())
			}
		}
		for _, dest := range c.dests {
			fmt.Printf("\n-- to %s\n", dest)
			printRSS(rows[dest], c.label+", "+dest)
		}
	}
	return nil
}

// ---- loading ----

type dataset struct {
	n          int
	start, end time.Time
	bytes      int64 // event data bytes: string fields + 64 bytes of fixed-width fields per row
}

func ensureLoaded(ctx context.Context, conn driver.Conn, c config, n int) (dataset, error) {
	// The interval is a function of n, so that a kept table (-keep) is found again; two
	// sizes landing in the same hour are reported below (the counts differ).
	start := base.Add(time.Duration(n%(24*9)) * time.Hour)
	d := dataset{n: n, start: start, end: start.Add(time.Hour)}
	have, err := countIn(ctx, conn, c.db, d)
	if err != nil {
		return d, err
	}
	if have != 0 && have != uint64(n) {
		return d, fmt.Errorf("interval %s holds %d events, not %d: drop database %s (run without -keep)", start.Format(time.RFC3339), have, n, c.db)
	}
	if have == 0 {
		fmt.Printf("== loading %d events into %s.events, inserted_at in [%s, %s)\n", n, c.db, d.start.Format(time.RFC3339), d.end.Format(time.RFC3339))
		t0 := time.Now()
		if err := load(ctx, c, d); err != nil {
			return d, err
		}
		el := time.Since(t0)
		fmt.Printf("   loaded in %.1fs (%.0f events/s)\n", el.Seconds(), float64(n)/el.Seconds())
		if have, err = countIn(ctx, conn, c.db, d); err != nil {
			return d, err
		} else if have != uint64(n) {
			return d, fmt.Errorf("loaded %d events, want %d", have, n)
		}
	}
	row := conn.QueryRow(ctx, `SELECT toInt64(sum(length(event) + length(properties) + length(distinct_id) +
		length(elements_chain) + length(person_properties) + 64)) FROM `+c.db+`.events
		WHERE inserted_at >= toDateTime(?, 'UTC') AND inserted_at < toDateTime(?, 'UTC')`,
		d.start.Unix(), d.end.Unix())
	if err := row.Scan(&d.bytes); err != nil {
		return d, fmt.Errorf("size of interval: %w", err)
	}
	fmt.Printf("== interval %s: %d events, %.1f MB of event data (%.0f B/event)\n", d.start.Format(time.RFC3339), n, float64(d.bytes)/1e6, float64(d.bytes)/float64(n))
	return d, nil
}

func countIn(ctx context.Context, conn driver.Conn, db string, d dataset) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events WHERE inserted_at >= toDateTime(?, 'UTC') AND inserted_at < toDateTime(?, 'UTC')",
		d.start.Unix(), d.end.Unix()).Scan(&n)
	return n, err
}

// templates are demo events (internal/demo.One) that the loader varies: generating one
// costs ~25 µs (a JSON-marshalled map and crypto/rand), too slow for 10^7 rows on 2 cores.
// Each row takes a template's properties, names and person, a fresh random v4 uuid, and
// its own inserted_at, with the template's offsets to timestamp and created_at. 50,000
// templates (~25 MB of rows) are far more than gzip's 32 KiB window sees.
const nTemplates = 50_000

var (
	templatesOnce sync.Once
	templates     []abi.Event
)

func loadTemplates() []abi.Event {
	templatesOnce.Do(func() {
		r := mrand.New(mrand.NewPCG(42, 4242))
		t := base
		templates = make([]abi.Event, nTemplates)
		for i := range templates {
			templates[i] = demo.One(r, t)
		}
	})
	return templates
}

// load inserts d.n PostHog-shaped events with inserted_at spread evenly over the interval,
// in blocks of 100k rows, from c.loadWorkers goroutines.
func load(ctx context.Context, c config, d dataset) error {
	const block = 100_000
	tpl := loadTemplates()
	var next atomic.Int64
	var done atomic.Int64
	errc := make(chan error, c.loadWorkers)
	var wg sync.WaitGroup
	step := time.Hour / time.Duration(d.n)
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Printf("   ... %d / %d\n", done.Load(), d.n)
			}
		}
	}()
	for w := 0; w < c.loadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := chOpen(c.dsn, c.db)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			for {
				lo := int(next.Add(block)) - block
				if lo >= d.n {
					return
				}
				hi := min(lo+block, d.n)
				r := mrand.New(mrand.NewPCG(uint64(d.n), uint64(lo)))
				b, err := conn.PrepareBatch(ctx, `INSERT INTO events (uuid, event, properties, timestamp, team_id,
					distinct_id, elements_chain, created_at, person_id, person_properties, inserted_at, _timestamp, _offset)`)
				if err != nil {
					errc <- err
					return
				}
				for i := lo; i < hi; i++ {
					e := &tpl[r.IntN(len(tpl))]
					var id uuid.UUID
					binary.LittleEndian.PutUint64(id[:8], r.Uint64())
					binary.LittleEndian.PutUint64(id[8:], r.Uint64())
					id[6] = id[6]&0x0f | 0x40
					id[8] = id[8]&0x3f | 0x80
					ins := d.start.Add(step * time.Duration(i))
					ts := ins.Add(e.Timestamp.Sub(e.InsertedAt))
					created := ins.Add(e.CreatedAt.Sub(e.InsertedAt))
					if err := b.Append(id, e.Event, e.Properties, ts, e.TeamID, e.DistinctID,
						e.ElementsChain, created, uuid.UUID(*e.PersonID), *e.PersonProperties, &ins, ins, uint64(i)); err != nil {
						errc <- err
						return
					}
				}
				if err := b.Send(); err != nil {
					errc <- err
					return
				}
				done.Add(int64(hi - lo))
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errc)
	return <-errc
}

// ---- e2e ----

// variant is one sluice configuration timed in each e2e repetition: a binary and extra
// environment (e.g. GOMAXPROCS=2, or a build of the previous commit).
type variant struct {
	name, bin string
	env       []string
}

// parseVariant reads name[@binary][:K=V,K=V].
func parseVariant(s, defBin string) (variant, error) {
	v := variant{bin: defBin}
	head, env, hasEnv := strings.Cut(s, ":")
	v.name, v.bin, _ = strings.Cut(head, "@")
	if v.bin == "" {
		v.bin = defBin
	}
	if v.name == "" {
		return v, fmt.Errorf("variant %q: empty name", s)
	}
	if hasEnv && env != "" {
		v.env = strings.Split(env, ",")
	}
	return v, nil
}

func e2e(ctx context.Context, c config, st store, d dataset, cache string) error {
	vs := c.variants
	if len(vs) == 0 {
		vs = []variant{{name: "sluice", bin: c.sluice}}
	}
	fmt.Printf("\n== end to end: %d events (%.0f MB of event data) in one hourly interval, %d reps\n", d.n, float64(d.bytes)/1e6, c.reps)
	for _, v := range vs {
		fmt.Printf("   %s: %s serve %v (ClickHouse source) -> s3 plugin, JSON Lines + gzip (level 5) -> versitygw; backfill request to run Completed\n", v.name, v.bin, append(slices.Clone(c.sluiceEnv), v.env...))
	}
	if !c.skipSame {
		fmt.Println("   ch-same: clickhouse-client, Sluice's own query (ORDER BY inserted_at, uuid; LIMIT 1 BY), FORMAT JSONEachRow | gzip -1")
	}
	if !c.skipPlain {
		fmt.Println("   ch-plain: clickhouse-client, SELECT the same columns WHERE inserted_at in the interval (no ORDER BY/LIMIT BY) FORMAT JSONEachRow | gzip -1")
	}
	// One step per variant and per clickhouse-client dump; each repetition runs every step,
	// the order rotated by one per repetition, so that no step always runs first.
	type step struct {
		name string
		run  func() (time.Duration, string, error)
	}
	var steps []step
	for _, v := range vs {
		v := v
		steps = append(steps, step{v.name, func() (time.Duration, string, error) {
			vc := c
			vc.sluice, vc.lightPoll = v.bin, true
			vc.sluiceEnv = append(slices.Clone(c.sluiceEnv), v.env...)
			sr, err := sluiceRun(ctx, vc, st, d, cache)
			return sr.elapsed, fmt.Sprintf("run %.2fs in the API, %d records, %.1f MB gz, VmHWM %s, CPU %.1fs (%.2f cores), load %s",
				sr.runTime.Seconds(), sr.records, float64(sr.objBytes)/1e6, mib(sr.hwmAfter), sr.cpu.Seconds(), sr.cpu.Seconds()/sr.elapsed.Seconds(), bench.LoadAvg()), err
		}})
	}
	dump := func(name, q string) step {
		return step{name, func() (time.Duration, string, error) {
			el, n, err := chDump(ctx, c, q)
			return el, fmt.Sprintf("%.1f MB gz, client+gzip CPU %.1fs (%.2f cores), load %s", float64(n)/1e6,
				lastDumpCPU.Seconds(), lastDumpCPU.Seconds()/el.Seconds(), bench.LoadAvg()), err
		}}
	}
	if !c.skipSame {
		steps = append(steps, dump("ch-same", sameQuery(c.db, d)))
	}
	if !c.skipPlain {
		steps = append(steps, dump("ch-plain", plainQuery(c.db, d)))
	}
	times := map[string][]time.Duration{}
	for rep := 0; rep < c.reps; rep++ {
		for i := range steps {
			st := steps[(i+rep)%len(steps)]
			el, info, err := st.run()
			if err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			times[st.name] = append(times[st.name], el)
			fmt.Printf("   rep %d: %s %.2fs (%s)\n", rep+1, st.name, el.Seconds(), info)
		}
	}
	fmt.Printf("   load after: %s\n", bench.LoadAvg())
	if c.profileOut != "" {
		addr, err := bench.FreeAddr()
		if err != nil {
			return err
		}
		pc := c
		pc.sluice, pc.profileAddr, pc.lightPoll = c.profileBin, addr, true
		if pc.profileSeconds <= 0 {
			var secs []float64
			for _, t := range times[vs[0].name] {
				secs = append(secs, t.Seconds())
			}
			pc.profileSeconds = max(5, int(median(secs)))
		}
		pc.sluiceEnv = append(slices.Clone(c.sluiceEnv), vs[0].env...)
		pc.sluiceEnv = append(pc.sluiceEnv, "SLUICE_BENCH_PPROF_ADDR="+addr)
		sr, err := sluiceRun(ctx, pc, st, d, cache)
		if err != nil {
			return fmt.Errorf("profiled run: %w", err)
		}
		fmt.Printf("   profiled run (%s settings, not in the table): %.2fs; CPU profile of the first %ds in %s\n", vs[0].name, sr.elapsed.Seconds(), pc.profileSeconds, c.profileOut)
	}
	// Ratios of each clickhouse-client dump's time to each variant's, per repetition
	// (> 1: sluice is faster than the dump).
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Println()
	fmt.Fprintln(w, "variant\tsluice s (median)\tMB/s (median)\tbaseline\tbaseline s (median)\tbaseline/sluice min\tmedian\tmax\ttotal-time ratio\t")
	for _, v := range vs {
		ts := times[v.name]
		var secs []float64
		var tot time.Duration
		for _, t := range ts {
			secs = append(secs, t.Seconds())
			tot += t
		}
		for _, b := range []string{"ch-plain", "ch-same"} {
			bt, ok := times[b]
			if !ok {
				continue
			}
			var rs, bs []float64
			var btot time.Duration
			for i := range ts {
				rs = append(rs, bt[i].Seconds()/ts[i].Seconds())
				bs = append(bs, bt[i].Seconds())
				btot += bt[i]
			}
			fmt.Fprintf(w, "%s\t%.2f\t%.1f\t%s\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", v.name, median(secs), float64(d.bytes)/1e6/median(secs),
				b, median(bs), slices.Min(rs), median(rs), slices.Max(rs), btot.Seconds()/tot.Seconds())
		}
	}
	w.Flush()
	// Ratios between variants, per repetition (the first variant is the reference).
	if len(vs) > 1 {
		ref := times[vs[0].name]
		for _, v := range vs[1:] {
			var rs []float64
			for i, t := range times[v.name] {
				rs = append(rs, ref[i].Seconds()/t.Seconds())
			}
			fmt.Printf("speed-up %s vs %s (time ratio per rep): min %.3f median %.3f max %.3f\n", v.name, vs[0].name, slices.Min(rs), median(rs), slices.Max(rs))
		}
	}
	return nil
}

// sameQuery is the query host/source.ClickHouse.buildQuery sends for the interval (a run
// from the start), with its bound arguments inlined and JSONEachRow output.
func sameQuery(db string, d dataset) string {
	return fmt.Sprintf("SELECT `uuid`, `event`, `distinct_id`, toNullable(`person_id`), toInt64(`team_id`), `properties`, "+
		"toNullable(`person_properties`), `elements_chain`, `timestamp`, toNullable(`created_at`), "+
		"assumeNotNull(coalesce(`inserted_at`, `_timestamp`)) AS _sluice_inserted_at, toString(`uuid`) AS _sluice_uuid "+
		"FROM %s.`events` WHERE _sluice_inserted_at >= toDateTime(%d, 'UTC') AND _sluice_inserted_at < toDateTime(%d, 'UTC') "+
		"ORDER BY _sluice_inserted_at, _sluice_uuid LIMIT 1 BY `event`, cityHash64(`distinct_id`), `uuid` FORMAT JSONEachRow",
		db, d.start.Unix(), d.end.Unix())
}

func plainQuery(db string, d dataset) string {
	return fmt.Sprintf("SELECT uuid, event, distinct_id, person_id, team_id, properties, person_properties, elements_chain, "+
		"timestamp, created_at, inserted_at FROM %s.events WHERE inserted_at >= toDateTime(%d, 'UTC') AND inserted_at < toDateTime(%d, 'UTC') "+
		"FORMAT JSONEachRow", db, d.start.Unix(), d.end.Unix())
}

// chDump times `clickhouse-client --query q | gzip -1 | wc -c` and returns the gzip size.
func chDump(ctx context.Context, c config, q string) (time.Duration, int64, error) {
	u, _ := url.Parse(c.dsn)
	host, port, _ := net.SplitHostPort(u.Host)
	args := []string{"--host", host, "--port", port}
	settings, _ := url.ParseQuery(c.chSettings)
	for k, v := range settings {
		args = append(args, "--"+k+"="+v[0])
	}
	args = append(args, "--query", q)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := "set -o pipefail; clickhouse-client " + strings.Join(quoted, " ") + " | gzip -1 | wc -c"
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	el := time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("clickhouse-client: %v: %s", err, stderr.String())
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	lastDumpCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return el, n, nil
}

// lastDumpCPU is the user + system CPU of the last chDump's shell and the processes it
// waited for (clickhouse-client, gzip, wc), not the server's.
var lastDumpCPU time.Duration

// ---- one sluice serve process, one export, one backfill of one interval ----

type sluiceResult struct {
	elapsed, runTime    time.Duration
	records, objBytes   int64
	hwmBefore, hwmAfter int64
	rssBefore, rssPeak  int64
	heapPeak, sysPeak   int64
	exports             int   // exports of the interval run at once (MB/s counts each)
	anonAtPeak          int64 // RssAnon at the sampled VmRSS peak
	fileAtPeak          int64 // RssFile (binary text, mapped files) at that peak
	samples             int
	cpu                 time.Duration // user + system CPU of sluice serve during the export
}

var runSeq atomic.Int64

func sluiceRun(ctx context.Context, c config, st store, d dataset, cache string) (res sluiceResult, err error) {
	seq := runSeq.Add(1)
	data := filepath.Join(c.work, fmt.Sprintf("data-%d", seq))
	if err := os.MkdirAll(filepath.Join(data, "cache"), 0o750); err != nil {
		return res, err
	}
	if err := os.MkdirAll(cache, 0o750); err != nil {
		return res, err
	}
	if err := os.Symlink(cache, filepath.Join(data, "cache", "wazero")); err != nil {
		return res, err
	}
	defer os.RemoveAll(data)
	addr, err := bench.FreeAddr()
	if err != nil {
		return res, err
	}
	const token = "sluice-e2e-bench-token"
	dsn, _ := url.Parse(c.dsn)
	dsn.Path = "/" + c.db
	dsn.RawQuery = c.chSettings
	logf, err := os.Create(filepath.Join(c.work, fmt.Sprintf("serve-%d.log", seq)))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.Command(c.sluice, "serve", "--addr", addr, "--data-dir", data, "--api-token", token,
		"--plugins-dir", c.pluginsDir, "--lock", c.lock, "--settle-delay", "1s")
	cmd.Args = append(cmd.Args, c.sluiceArgs...)
	cmd.Env = append(os.Environ(), "SLUICE_CLICKHOUSE_DSN="+dsn.String(), "AWS_EC2_METADATA_DISABLED=true",
		// Only the s3 plugin runs here; the warehouse capabilities point at a closed
		// loopback port so nothing can reach Google or Snowflake.
		"SLUICE_BIGQUERY_ENDPOINT=http://127.0.0.1:1/", "SLUICE_SNOWFLAKE_ENDPOINT=http://127.0.0.1:1")
	cmd.Env = append(cmd.Env, c.sluiceEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, err
	}
	pid := cmd.Process.Pid
	defer func() {
		bench.Stop(cmd, 40*time.Second)
		if err != nil {
			logf.Sync()
			bench.PrintLogTail(logf.Name(), 30)
		}
	}()
	base := "http://" + addr
	if err := bench.WaitReady(base, cmd); err != nil {
		return res, err
	}
	bucket := fmt.Sprintf("sluice-e2e-%d-%d", time.Now().UnixNano(), seq)
	if err := st.create(ctx, bucket); err != nil {
		return res, fmt.Errorf("create %s bucket: %w", st.name(), err)
	}
	defer st.remove(context.Background(), bucket)
	api := bench.API{Base: base, Token: token}
	ids := make([]string, c.exports)
	for i := range ids {
		var exp struct{ ID string }
		plugin, cfg := st.destination(c, bucket, i)
		if err := api.Do("POST", "/api/v1/batch_exports", map[string]any{"name": fmt.Sprintf("bench-%s-%d", bucket, i), "interval": "hour",
			"destination": map[string]any{"type": plugin, "config": cfg}}, 201, &exp); err != nil {
			return res, err
		}
		ids[i] = exp.ID
	}
	// Let the process settle (export scheduling, GC after start) before the baseline.
	time.Sleep(time.Second)
	res.hwmBefore, res.rssBefore = bench.ProcStatusOf(pid, "VmHWM"), bench.ProcStatusOf(pid, "VmRSS")
	cpuBefore := bench.ProcCPU(pid)

	stopSampling := make(chan struct{})
	var sampWG sync.WaitGroup
	sampWG.Add(2)
	go func() { // VmRSS every 100 ms
		defer sampWG.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v := bench.ProcStatusOf(pid, "VmRSS"); v > res.rssPeak {
				res.rssPeak = v
				res.anonAtPeak, res.fileAtPeak = bench.ProcStatusOf(pid, "RssAnon"), bench.ProcStatusOf(pid, "RssFile")
			}
			res.samples++
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	go func() { // Go heap every 500 ms from /metrics
		defer sampWG.Done()
		if c.lightPoll {
			return
		}
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			h, s := goMem(base)
			res.heapPeak, res.sysPeak = max(res.heapPeak, h), max(res.sysPeak, s)
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	res.exports = len(ids)
	t0 := time.Now()
	for _, id := range ids {
		if err := api.Do("POST", "/api/v1/batch_exports/"+id+"/backfills",
			map[string]any{"start_at": d.start.Format(time.RFC3339), "end_at": d.end.Format(time.RFC3339)}, 201, nil); err != nil {
			close(stopSampling)
			sampWG.Wait()
			return res, err
		}
	}
	profDone := make(chan error, 1)
	if c.profileAddr != "" {
		go func() { profDone <- fetchProfile(c.profileAddr, c.profileSeconds, c.profileOut) }()
	} else {
		profDone <- nil
	}
	type runView struct {
		Status           string
		LatestError      string     `json:"latest_error"`
		RecordsCompleted int64      `json:"records_completed"`
		BytesExported    int64      `json:"bytes_exported"`
		IntervalStart    time.Time  `json:"interval_start"`
		StartedAt        *time.Time `json:"started_at"`
		FinishedAt       *time.Time `json:"finished_at"`
	}
	// Polling costs the measured process CPU (a CPU profile of an e2e export at 50 ms with
	// /metrics sampling: ~10% of its samples answered the harness), so the e2e comparison
	// polls every 200 ms and leaves /metrics alone; the RSS runs keep the finer sampling.
	poll := 50 * time.Millisecond
	if c.lightPoll {
		poll = 200 * time.Millisecond
	}
	done := map[string]*runView{}
	deadline := time.Now().Add(2 * time.Hour)
	for len(done) < len(ids) {
		for _, id := range ids {
			if done[id] != nil {
				continue
			}
			var out struct{ Results []runView }
			if err := api.Do("GET", "/api/v1/batch_exports/"+id+"/runs?limit=50", nil, 200, &out); err != nil {
				close(stopSampling)
				sampWG.Wait()
				return res, err
			}
			for i, r := range out.Results {
				if !r.IntervalStart.Equal(d.start) {
					continue // a scheduled run of the current hour, not ours
				}
				switch r.Status {
				case "Completed":
					done[id] = &out.Results[i]
				case "Failed", "FailedRetryable", "Cancelled":
					close(stopSampling)
					sampWG.Wait()
					return res, fmt.Errorf("run %s: %s", r.Status, r.LatestError)
				}
			}
		}
		if len(done) < len(ids) {
			if time.Now().After(deadline) {
				close(stopSampling)
				sampWG.Wait()
				return res, errors.New("runs did not complete in 2h")
			}
			time.Sleep(poll)
		}
	}
	res.elapsed = time.Since(t0)
	close(stopSampling)
	sampWG.Wait()
	if err := <-profDone; err != nil {
		return res, fmt.Errorf("cpu profile: %w", err)
	}
	res.hwmAfter = bench.ProcStatusOf(pid, "VmHWM")
	res.cpu = bench.ProcCPU(pid) - cpuBefore
	for _, r := range done {
		if r.RecordsCompleted != int64(d.n) {
			return res, fmt.Errorf("a run exported %d records, the interval holds %d", r.RecordsCompleted, d.n)
		}
		res.records += r.RecordsCompleted
		if r.StartedAt != nil && r.FinishedAt != nil {
			res.runTime = max(res.runTime, r.FinishedAt.Sub(*r.StartedAt))
		}
	}
	objects, size, err := st.written(ctx, bucket)
	if err != nil {
		return res, err
	}
	res.objBytes = size
	if objects == 0 {
		return res, errors.New("no object written")
	}
	return res, nil
}

// fetchProfile writes a CPU profile of the next seconds of the process serving pprof at addr.
func fetchProfile(addr string, seconds int, out string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// warmUp starts and stops one sluice serve, which compiles the locked plugins into the
// shared cache: the measured processes then start like a long-running server's restart,
// and their VmHWM does not include compiling.
func warmUp(c config, cache string) error {
	data := filepath.Join(c.work, "data-warmup")
	if err := os.MkdirAll(filepath.Join(data, "cache"), 0o750); err != nil {
		return err
	}
	defer os.RemoveAll(data)
	if err := os.MkdirAll(cache, 0o750); err != nil {
		return err
	}
	if err := os.Symlink(cache, filepath.Join(data, "cache", "wazero")); err != nil {
		return err
	}
	addr, err := bench.FreeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(c.sluice, "serve", "--addr", addr, "--data-dir", data, "--api-token", "warmup",
		"--plugins-dir", c.pluginsDir, "--lock", c.lock)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	err = bench.WaitReady("http://"+addr, cmd)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if err != nil {
		return fmt.Errorf("warm-up: %w\n%s", err, out.String())
	}
	return nil
}

func emptyBucket(ctx context.Context, s3c *s3.Client, bucket string) {
	list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket})
	if err == nil {
		for _, o := range list.Contents {
			_, _ = s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: o.Key})
		}
	}
	_, _ = s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
}

// goMem reads go_memstats_heap_inuse_bytes and go_memstats_sys_bytes from /metrics.
func goMem(base string) (heap, sys int64) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, m := range []struct {
			name string
			p    *int64
		}{{"go_memstats_heap_inuse_bytes ", &heap}, {"go_memstats_sys_bytes ", &sys}} {
			if v, ok := strings.CutPrefix(l, m.name); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				*m.p = int64(f)
			}
		}
	}
	return heap, sys
}

type rssRow struct {
	d dataset
	r sluiceResult
}

func printRSS(rows []rssRow, label string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Println()
	fmt.Fprintln(w, "events\tevent data MB\tgz MB\tseconds\tMB/s\tVmRSS before\tVmHWM before\tpeak VmRSS (100 ms)\tVmHWM after\tGo HeapInuse peak\tGo Sys peak\t")
	for _, x := range rows {
		fmt.Fprintf(w, "%d\t%.0f\t%.0f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.d.n, float64(x.d.bytes)/1e6, float64(x.r.objBytes)/1e6,
			x.r.elapsed.Seconds(), float64(x.d.bytes)*float64(max(1, x.r.exports))/1e6/x.r.elapsed.Seconds(), mib(x.r.rssBefore), mib(x.r.hwmBefore),
			mib(x.r.rssPeak), mib(x.r.hwmAfter), mib(x.r.heapPeak), mib(x.r.sysPeak))
	}
	w.Flush()
	if len(rows) >= 2 && rows[0].d.bytes != rows[len(rows)-1].d.bytes { // repetitions of one size: no slope
		a, b := rows[0], rows[len(rows)-1]
		slope := float64(b.r.hwmAfter-a.r.hwmAfter) / (float64(b.d.bytes-a.d.bytes) / 1e9)
		fmt.Printf("VmHWM slope %s: %+.1f MiB per GB of event data (%d -> %d events)\n", label, slope/(1<<20), a.d.n, b.d.n)
	}
}

// throttleProxy forwards TCP connections from a loopback port to the S3 endpoint, limiting
// the client-to-server direction of each connection to rate bytes/s. Plain TCP: the Host
// header SigV4 signed passes through unchanged.
func throttleProxy(endpoint string, rate float64) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(in, out); in.Close() }()
				buf := make([]byte, 32<<10)
				start, sent := time.Now(), 0.0
				for {
					n, err := in.Read(buf)
					if n > 0 {
						if _, werr := out.Write(buf[:n]); werr != nil {
							return
						}
						sent += float64(n)
						if ahead := time.Duration(sent/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
							time.Sleep(ahead)
						}
					}
					if err != nil {
						out.(*net.TCPConn).CloseWrite()
						return
					}
				}
			}()
		}
	}()
	return "http://" + l.Addr().String(), nil
}

// ---- helpers ----

func chOpen(dsn, db string) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	opts.Auth.Database = db
	opts.Settings = nil
	opts.ReadTimeout = 10 * time.Minute
	return clickhouse.Open(opts)
}

func loopback(raw, what string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q: not a URL", what, raw)
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s %s is not loopback; refusing", what, raw)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-e2e:", err)
		os.Exit(2)
	}
}
