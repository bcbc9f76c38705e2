package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// TestToErrorEchoMessages: Echo's errors become lower-case messages, and an HTTPError
// with an empty message or an unknown status does not panic.
func TestToErrorEchoMessages(t *testing.T) {
	cases := []struct {
		err    *echo.HTTPError
		status int
		msg    string
	}{
		{echo.ErrMethodNotAllowed, 405, "method not allowed"},
		{echo.ErrNotFound, 404, "not found"},
		{echo.NewHTTPError(http.StatusBadRequest, "Bad cursor"), 400, "bad cursor"},
		{echo.NewHTTPError(http.StatusBadRequest, ""), 400, "bad request"},
		{echo.NewHTTPError(499), 499, "error 499"},
		{echo.NewHTTPError(http.StatusInternalServerError, "db password is hunter2"), 500, "internal server error"},
	}
	for _, c := range cases {
		ae, _ := toError(c.err)
		if ae.Status != c.status || ae.Message != c.msg {
			t.Errorf("%v: %d %q, want %d %q", c.err, ae.Status, ae.Message, c.status, c.msg)
		}
	}
}

// TestRoutesDocumented checks Server.Routes through apiPath against the embedded
// document (openapi_test.go does the same, both ways, through HTTP).
func TestRoutesDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if got := apiPath("/api/v1/batch_exports/:id/runs/:run_id"); got != "/api/v1/batch_exports/{id}/runs/{run_id}" {
		t.Errorf("apiPath = %s", got)
	}
	s := New(Config{}, Deps{})
	for _, r := range s.Routes() {
		if _, ok := doc.Paths[apiPath(r.Path)][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s %s is not in openapi.json", r.Method, apiPath(r.Path))
		}
	}
}
