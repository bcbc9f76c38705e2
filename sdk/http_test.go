package sdk

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/abi"
)

func TestHTTPResponseErrorAndClassify(t *testing.T) {
	cases := []struct {
		status     int
		retryAfter string
		outcome    string
		ms         int64
	}{
		{200, "", "", 0},
		{204, "", "", 0},
		{500, "", abi.OutcomeRetry, 0},
		{503, "7", abi.OutcomeRetryAfter, 7000},
		{429, "120", abi.OutcomeRetryAfter, 120_000},
		{429, "soon", abi.OutcomeRetry, 0},
		{408, "", abi.OutcomeRetry, 0},
		{401, "5", abi.OutcomeFail, 0},
		{400, "", abi.OutcomeFail, 0},
		{413, "", abi.OutcomeFail, 0},
		{302, "", abi.OutcomeFail, 0},
	}
	for _, c := range cases {
		resp := abi.HTTPResponse{Status: c.status, Body: "server says no", Headers: map[string]string{"Retry-After": c.retryAfter}}
		err := HTTPResponseError(resp)
		if (err == nil) != (c.outcome == "") {
			t.Fatalf("%d: err %v", c.status, err)
		}
		if err == nil {
			continue
		}
		cl, ok := ClassifyHTTP(ToABI(err))
		if !ok || cl.Outcome != c.outcome || cl.RetryAfterMS != c.ms {
			t.Errorf("%d Retry-After %q: %+v ok=%v, want %s %d ms (error %v)", c.status, c.retryAfter, cl, ok, c.outcome, c.ms, err)
		}
	}
	if _, ok := ClassifyHTTP(&abi.Error{Code: "NoSuchBucket"}); ok {
		t.Error("a non-HTTP code was classified")
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	if d := ParseRetryAfter(now.Add(90*time.Second).Format(time.RFC1123), now); d != 90*time.Second {
		t.Errorf("HTTP date: %s", d)
	}
}
