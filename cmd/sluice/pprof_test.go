package main

import (
	"log/slog"
	"strings"
	"testing"
)

func TestPprofAddrMustBeLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr, wantErr string
	}{
		{"", ""},
		{"127.0.0.1:0", ""},
		{"[::1]:0", ""},
		{"0.0.0.0:6060", "must be a loopback address"},
		{"10.1.2.3:6060", "must be a loopback address"},
		{"localhost:6060", "must be a loopback address"},
		{"127.0.0.1", "missing port"},
	} {
		err := startPprof(tc.addr, slog.New(slog.DiscardHandler))
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("startPprof(%q) = %v, want error containing %q", tc.addr, err, tc.wantErr)
		}
	}
}

func TestGCSEndpointMustBeLoopback(t *testing.T) {
	for _, tc := range []struct {
		url, wantErr string
	}{
		{"", ""},
		{"http://127.0.0.1:4443/storage/v1/", ""},
		{"http://[::1]:4443/storage/v1/", ""},
		{"https://storage.googleapis.com/storage/v1/", "must be a loopback address"},
		{"http://localhost:4443/storage/v1/", "must be a loopback address"},
		{"http://10.0.0.1:4443/", "must be a loopback address"},
		{"127.0.0.1:4443", "not an http(s) URL"},
	} {
		err := loopbackURL(tc.url)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("loopbackURL(%q) = %v, want error containing %q", tc.url, err, tc.wantErr)
		}
	}
}
