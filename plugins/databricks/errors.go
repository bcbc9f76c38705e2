package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// fatalCodes are Databricks error codes that retrying cannot change: credentials, rights,
// a missing catalog/schema/volume, a bad request. OAuth's invalid_client and
// invalid_grant (a wrong client id or secret) belong here too.
var fatalCodes = map[string]bool{
	"PERMISSION_DENIED": true, "UNAUTHENTICATED": true, "INVALID_PARAMETER_VALUE": true, "BAD_REQUEST": true,
	"NOT_FOUND": true, "RESOURCE_DOES_NOT_EXIST": true, "INVALID_STATE": true, "FEATURE_DISABLED": true,
	"invalid_client": true, "invalid_grant": true, "unauthorized_client": true, "invalid_scope": true,
}

// classify decides a failure from the code apiError.abiCode wrote: a statement that FAILED
// is retried only for a transient code (the warehouse busy or unavailable, or this call's
// time running out); an HTTP answer by its Databricks error code, else by its status
// (401, 403 and other 4xx fail; 408, 429 and 5xx retry). Other failures (no answer) follow
// the host status.
func classify(e *abi.Error, attempt int) abi.Classification {
	if e == nil {
		return sdk.DefaultClassify(e, attempt)
	}
	if rest, ok := strings.CutPrefix(e.Code, "statement_"); ok {
		state, code, _ := strings.Cut(rest, ":")
		if state == "timeout" || transientCodes[code] {
			return abi.Classification{Outcome: abi.OutcomeRetry, Reason: fmt.Sprintf("Databricks statement %s with %s is transient", state, code)}
		}
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: fmt.Sprintf("Databricks statement %s (%s): retrying runs the same SQL", state, code)}
	}
	if code, st, ok := strings.Cut(e.Code, ";http_"); ok {
		status, err := strconv.Atoi(st)
		if err == nil {
			switch {
			case fatalCodes[code]:
				return abi.Classification{Outcome: abi.OutcomeFail, Reason: "Databricks error " + code + " is not retryable"}
			case transientCodes[code]:
				return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "Databricks error " + code + " is transient"}
			case status == 408 || status == 429 || status >= 500:
				return abi.Classification{Outcome: abi.OutcomeRetry, Reason: fmt.Sprintf("Databricks answered HTTP %d", status)}
			default:
				return abi.Classification{Outcome: abi.OutcomeFail, Reason: fmt.Sprintf("Databricks answered HTTP %d, which retrying cannot change", status)}
			}
		}
	}
	if e.Field != "" {
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "invalid config key " + strconv.Quote(e.Field)}
	}
	return sdk.DefaultClassify(e, attempt)
}
