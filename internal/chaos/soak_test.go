package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestGrowthCriterion: a steady climb fails, a plateau and a late one-off step that comes
// back down pass.
func TestGrowthCriterion(t *testing.T) {
	mib := int64(1 << 20)
	series := func(f func(i int) int64) []Sample {
		var out []Sample
		start := time.Unix(0, 0)
		for i := 0; i < 180; i++ {
			out = append(out, Sample{At: start.Add(time.Duration(i) * 10 * time.Second), Host: 1, RSS: f(i), Goroutines: 50})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		rss  func(i int) int64
		want bool
	}{
		{"plateau", func(i int) int64 { return 100 * mib }, false},
		{"step after the first run, then flat", func(i int) int64 {
			if i > 40 {
				return 107 * mib
			}
			return 60 * mib
		}, false},
		{"late step that comes back down", func(i int) int64 {
			if i > 150 && i < 165 {
				return 170 * mib
			}
			return 105 * mib
		}, false},
		{"steady climb (2 MiB a minute)", func(i int) int64 { return 100*mib + int64(i)*mib/3 }, true},
	} {
		g := Growths(series(tc.rss), 5*time.Minute)
		if len(g) != 1 || g[0].Unbounded() != tc.want {
			t.Errorf("%s: %v, want unbounded=%v", tc.name, g, tc.want)
		}
	}
}

// TestGrowthOfSamplesFile applies the criterion to a soak's samples (SLUICE_SOAK_SAMPLES,
// the soak-samples.csv a soak writes) and prints it: for re-reading a past soak.
func TestGrowthOfSamplesFile(t *testing.T) {
	p := os.Getenv("SLUICE_SOAK_SAMPLES")
	if p == "" {
		t.Skip("SLUICE_SOAK_SAMPLES not set")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var ss []Sample
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		var sec float64
		var s Sample
		if _, err := fmt.Sscanf(line, "%f,%d,%d,%d,%d", &sec, &s.Host, &s.Pid, &s.RSS, &s.Goroutines); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		s.At = time.Unix(0, 0).Add(time.Duration(sec * float64(time.Second)))
		ss = append(ss, s)
	}
	for _, g := range Growths(ss, 5*time.Minute) {
		t.Logf("%s unbounded=%v", g, g.Unbounded())
	}
}
