package membudget

import (
	"math"
	"strings"
	"testing"
)

func TestDerive(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Input
		want Plan // Limit, GoLimit, PerRun, Fit, PartSize, Concurrency, EncoderWorkers, Short
	}{
		{
			// The defaults of sluice serve on 2 cores: 4 workers + 2 backfill workers.
			// Runs = 232-88-48 = 96 MiB; a share of 16 MiB is below RunBase, so the
			// smallest parts, one in flight; one run of 52 MiB fits.
			name: "defaults", in: Input{Slots: 6, CPUs: 2},
			want: Plan{Limit: 232 * MiB, GoLimit: 144 * MiB, PerRun: 52 * MiB, Fit: 1, PartSize: 5 * MiB, Concurrency: 1, EncoderWorkers: 2},
		},
		{
			// 1 GiB: share (1024-88-48)/6 = 148 MiB; 148-32-10 = 106 over 3 parts: 35 MiB.
			name: "1 GiB", in: Input{Limit: 1024 * MiB, Slots: 6, CPUs: 2},
			want: Plan{Limit: 1024 * MiB, GoLimit: 936 * MiB, PerRun: 147 * MiB, Fit: 6, PartSize: 35 * MiB, Concurrency: 2, EncoderWorkers: 2},
		},
		{
			// Plenty: parts stop at 50 MiB, every slot runs at once.
			name: "4 GiB, 8 cores", in: Input{Limit: 4096 * MiB, Slots: 6, CPUs: 8},
			want: Plan{Limit: 4096 * MiB, GoLimit: 4008 * MiB, PerRun: (32 + 34 + 150) * MiB, Fit: 6, PartSize: 50 * MiB, Concurrency: 2, EncoderWorkers: 8},
		},
		{
			// 64 cores on the default budget: the encoder may take an eighth of 96 MiB,
			// (2w+1) x 2 MiB <= 12 MiB, so 2 workers.
			name: "many cores", in: Input{Slots: 6, CPUs: 64},
			want: Plan{Limit: 232 * MiB, GoLimit: 144 * MiB, PerRun: 52 * MiB, Fit: 1, PartSize: 5 * MiB, Concurrency: 1, EncoderWorkers: 2},
		},
		{
			// One slot gets the whole budget: 96-32-10 = 54 over 3 parts: 18 MiB.
			name: "one slot", in: Input{Slots: 1, CPUs: 2},
			want: Plan{Limit: 232 * MiB, GoLimit: 144 * MiB, PerRun: (42 + 54) * MiB, Fit: 1, PartSize: 18 * MiB, Concurrency: 2, EncoderWorkers: 2},
		},
		{
			// An explicit part size is kept and counted (3 x 16 MiB): one run at a time.
			name: "explicit part size", in: Input{Slots: 6, CPUs: 2, PartSize: 16 * MiB},
			want: Plan{Limit: 232 * MiB, GoLimit: 144 * MiB, PerRun: 90 * MiB, Fit: 1, PartSize: 16 * MiB, Concurrency: 2, EncoderWorkers: 2},
		},
		{
			name: "explicit concurrency", in: Input{Limit: 1024 * MiB, Slots: 6, CPUs: 2, Concurrency: 4},
			want: Plan{Limit: 1024 * MiB, GoLimit: 936 * MiB, PerRun: (42 + 105) * MiB, Fit: 6, PartSize: 21 * MiB, Concurrency: 4, EncoderWorkers: 2},
		},
		{
			// GOMEMLIMIT wins: the memory limit is it plus what Go does not count.
			name: "GOMEMLIMIT", in: Input{Limit: 1024 * MiB, GoLimit: 150 * MiB, Slots: 6, CPUs: 2},
			want: Plan{Limit: 238 * MiB, GoLimit: 150 * MiB, PerRun: 52 * MiB, Fit: 1, PartSize: 5 * MiB, Concurrency: 1, EncoderWorkers: 2},
		},
		{
			// GOMEMLIMIT at its maximum (no limit): parts stop at 50 MiB, no overflow.
			name: "GOMEMLIMIT max", in: Input{GoLimit: math.MaxInt64, Slots: 6, CPUs: 2},
			want: Plan{Limit: math.MaxInt64, GoLimit: math.MaxInt64, PerRun: 192 * MiB, Fit: 6, PartSize: 50 * MiB, Concurrency: 2, EncoderWorkers: 2},
		},
		{
			// Smaller than one run: one at a time anyway, flagged.
			name: "too small", in: Input{Limit: 100 * MiB, Slots: 6, CPUs: 2},
			want: Plan{Limit: 100 * MiB, GoLimit: 12 * MiB, PerRun: 48 * MiB, Fit: 1, PartSize: 5 * MiB, Concurrency: 1, EncoderWorkers: 1, Short: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Derive(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got.Runs, got.Slots = 0, 0
			if got != tc.want {
				t.Errorf("Derive(%+v)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestDeriveInvariants(t *testing.T) {
	for limit := int64(64); limit <= 8192; limit += 32 {
		for slots := 1; slots <= 12; slots++ {
			p, err := Derive(Input{Limit: limit * MiB, Slots: slots, CPUs: 4})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case p.PartSize < MinPartSize || p.PartSize > MaxPartSize || p.PartSize%MiB != 0:
				t.Fatalf("limit %d, slots %d: part size %d", limit, slots, p.PartSize)
			case p.Fit < 1 || p.Fit > slots:
				t.Fatalf("limit %d, slots %d: fit %d", limit, slots, p.Fit)
			case !p.Short && int64(p.Fit)*p.PerRun > p.Runs:
				t.Fatalf("limit %d, slots %d: %d runs of %d exceed %d", limit, slots, p.Fit, p.PerRun, p.Runs)
			case p.Short != (p.PerRun > p.Runs):
				t.Fatalf("limit %d, slots %d: short %v with %d per run, %d for runs", limit, slots, p.Short, p.PerRun, p.Runs)
			case p.Capacity() < p.PerRun:
				t.Fatalf("limit %d, slots %d: capacity %d below one run %d", limit, slots, p.Capacity(), p.PerRun)
			}
		}
	}
}

func TestDeriveErrors(t *testing.T) {
	for _, tc := range []struct {
		in   Input
		want string
	}{
		{Input{Limit: -1}, "negative memory limit"},
		{Input{PartSize: 4 * MiB}, "outside [5 MiB, 5 GiB]"},
		{Input{PartSize: 6 << 30}, "outside [5 MiB, 5 GiB]"},
		{Input{Concurrency: -1}, "negative upload concurrency"},
	} {
		if _, err := Derive(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Derive(%+v) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
