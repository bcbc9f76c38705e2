package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSetupMemory(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	for _, tc := range []struct {
		name      string
		in        memorySettings
		goLimit   int64 // the Go soft limit afterwards; 0: unchanged
		budget    bool
		partSize  int64
		wantErr   string
		wantInLog string
	}{
		{name: "default", in: memorySettings{limit: "232", slots: 6, defaultPart: 50},
			goLimit: 144 << 20, budget: true, partSize: 5 << 20, wantInLog: "memory limit 232 MiB (Go soft limit 144 MiB)"},
		{name: "explicit part size counted", in: memorySettings{limit: "1024", partMiB: 16, slots: 6, defaultPart: 50},
			goLimit: 936 << 20, budget: true, partSize: 16 << 20, wantInLog: "S3 parts 16 MiB x 2"},
		{name: "off", in: memorySettings{limit: "off", slots: 6, defaultPart: 50},
			budget: false, partSize: 50 << 20, wantInLog: "memory budget off"},
		{name: "zero is off", in: memorySettings{limit: "0", partMiB: 8, slots: 6, defaultPart: 50},
			budget: false, partSize: 8 << 20, wantInLog: "memory budget off"},
		{name: "GOMEMLIMIT wins", in: memorySettings{limit: "1024", slots: 6, defaultPart: 50, goMemLimit: "12345MiB"},
			budget: true, partSize: 50 << 20, wantInLog: "GOMEMLIMIT is set"},
		{name: "too small", in: memorySettings{limit: "100", slots: 6, defaultPart: 50},
			goLimit: 12 << 20, budget: true, partSize: 5 << 20, wantInLog: "smaller than one run"},
		{name: "not a number", in: memorySettings{limit: "lots", slots: 6}, wantErr: `must be a number of MiB or "off", got "lots"`},
		{name: "negative", in: memorySettings{limit: "-5", slots: 6}, wantErr: "must be a number of MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const sentinel = 12345 << 20
			debug.SetMemoryLimit(sentinel)
			var buf bytes.Buffer
			m, err := setupMemory(tc.in, slog.New(slog.NewTextHandler(&buf, nil)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := debug.SetMemoryLimit(-1)
			switch {
			case tc.goLimit != 0 && got != tc.goLimit:
				t.Errorf("Go soft limit %d MiB, want %d MiB", got>>20, tc.goLimit>>20)
			case tc.goLimit == 0 && got != sentinel:
				t.Errorf("Go soft limit changed to %d MiB; want it left alone", got>>20)
			}
			if (m.budget != nil) != tc.budget || m.partSize != tc.partSize {
				t.Errorf("budget %v, part size %d MiB; want %v, %d MiB", m.budget != nil, m.partSize>>20, tc.budget, tc.partSize>>20)
			}
			if !strings.Contains(buf.String(), tc.wantInLog) {
				t.Errorf("log %q lacks %q", buf.String(), tc.wantInLog)
			}
			if tc.in.goMemLimit != "" && m.plan.GoLimit != sentinel {
				t.Errorf("plan sized from Go limit %d, want the runtime's (GOMEMLIMIT) %d", m.plan.GoLimit, int64(sentinel))
			}
		})
	}
}
