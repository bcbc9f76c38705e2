package main

import (
	"context"
	"strings"
	"testing"
)

// A malformed duration in the environment stops `sluice serve` with an error naming the
// variable, before anything starts.
func TestServeRejectsBadDurations(t *testing.T) {
	for _, tc := range []struct{ env, value, want string }{
		{"SLUICE_SHUTDOWN_GRACE", "soon", "SLUICE_SHUTDOWN_GRACE"},
		{"SLUICE_SHUTDOWN_GRACE", "-5s", "SLUICE_SHUTDOWN_GRACE"},
		{"SLUICE_SCHEDULE_SYNC", "often", "SLUICE_SCHEDULE_SYNC"},
		{"SLUICE_SCHEDULE_SYNC", "0s", "must be positive"},
		{"SLUICE_COUNT_TIMEOUT", "long", "SLUICE_COUNT_TIMEOUT"},
		{"SLUICE_COUNT_TIMEOUT", "0s", "must be positive"},
		{"SLUICE_MISSING_DATA_INTERVAL", "hourly", "SLUICE_MISSING_DATA_INTERVAL"},
		{"SLUICE_MISSING_DATA_WINDOW", "0s", "must be positive"},
	} {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			err := serve(context.Background(), []string{"--data-dir", t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve with %s=%s: %v, want an error mentioning %s", tc.env, tc.value, err, tc.want)
			}
		})
	}
}
