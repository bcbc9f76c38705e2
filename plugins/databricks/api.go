package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/sdk"
)

// client speaks Databricks' REST APIs through the http capability: the OAuth token
// endpoint, the Files API and the SQL Statement Execution API.
type client struct {
	auth      string // the Authorization header: "Bearer {secret:access_token}" or an OAuth token
	warehouse string
	waitS     int
	requests  int
	// deadline bounds one guest call's statements (the host's 60 s per call).
	deadline time.Time
	// OAuth: the client id and when its token was issued (renewed before its hour ends).
	clientID string
	loginAt  time.Time
}

// tokenRenewal renews an OAuth access token (valid 3600 s) well before it expires.
const tokenRenewal = 50 * time.Minute

const (
	requestTimeoutMS = 30_000 // the host's cap; a statement's wait_timeout is at most 20 s
	// callBudget is how long one guest call may spend in statements and polls: under the
	// host's 60 s per guest call, with room for the requests after it.
	callBudget = 50 * time.Second
)

// apiError is a Databricks answer that is not a success: an HTTP status with Databricks'
// error envelope {"error_code", "message"} (or OAuth's {"error", "error_description"}), or
// a statement that ended FAILED, CANCELED or CLOSED.
type apiError struct {
	Op        string // "PUT /api/2.0/fs/files/...", "statement"
	Status    int    // HTTP status; 0 for a statement's own state
	State     string // FAILED, CANCELED, CLOSED; "" for an HTTP error
	ErrorCode string
	Message   string
	Retryable bool
}

func (e *apiError) Error() string {
	code := ""
	if e.ErrorCode != "" {
		code = e.ErrorCode + ": "
	}
	if e.State != "" {
		return fmt.Sprintf("Databricks statement %s: %s%s", e.State, code, e.Message)
	}
	return fmt.Sprintf("Databricks %s: HTTP %d: %s%s", e.Op, e.Status, code, e.Message)
}

// abiCode is the Error.code Classify reads back: the Databricks error code, with the HTTP
// status after a ';' ("PERMISSION_DENIED;http_403", "statement_failed:TABLE_OR_VIEW_NOT_FOUND").
func (e *apiError) abiCode() string {
	if e.State != "" {
		return "statement_" + strings.ToLower(e.State) + ":" + e.ErrorCode
	}
	return e.ErrorCode + ";http_" + strconv.Itoa(e.Status)
}

func wrap(e *apiError) error { return sdk.WithCode(e, e.abiCode(), abi.StatusOK) }

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
func (c *client) do(method, path string, body string, upload *sdk.Upload, headers map[string]string, out any) error {
	if c.clientID != "" && time.Since(c.loginAt) > tokenRenewal {
		if err := c.login(c.clientID); err != nil {
			return err
		}
	}
	req := abi.HTTPRequest{Method: method, URL: path, Body: body, TimeoutMS: requestTimeoutMS, MaxResponseBytes: 1 << 20,
		Headers: map[string]string{"Authorization": c.auth}, ResponseHeaders: []string{"Retry-After"}}
	for k, v := range headers {
		req.Headers[k] = v
	}
	if upload != nil {
		req.BodyUpload = upload.Handle()
	}
	resp, err := sdk.HTTP(req)
	if err != nil {
		return fmt.Errorf("Databricks %s %s: %w", method, shortPath(path), err)
	}
	c.requests++
	if resp.Status < 200 || resp.Status > 299 {
		return wrap(answerError(method+" "+shortPath(path), resp))
	}
	if out == nil || strings.TrimSpace(resp.Body) == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(resp.Body), out); err != nil {
		return fmt.Errorf("Databricks %s %s: unreadable answer: %w", method, shortPath(path), err)
	}
	return nil
}

// shortPath drops the query string from error messages.
func shortPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// answerError reads Databricks' error envelope from a failed answer.
func answerError(op string, resp abi.HTTPResponse) *apiError {
	e := &apiError{Op: op, Status: resp.Status, Retryable: resp.Status == 408 || resp.Status == 429 || resp.Status >= 500}
	var env struct {
		ErrorCode        string `json:"error_code"`
		Message          string `json:"message"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal([]byte(resp.Body), &env) == nil {
		e.ErrorCode, e.Message = env.ErrorCode, env.Message
		if e.ErrorCode == "" && env.Error != "" { // OAuth token endpoint
			e.ErrorCode, e.Message = env.Error, env.ErrorDescription
		}
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(resp.Body)
		if len(e.Message) > 512 {
			e.Message = e.Message[:512] + "…"
		}
	}
	return e
}

// login gets an OAuth access token for a service principal (machine-to-machine, client
// credentials grant, the secret sent in the form body as client_secret_post): the host puts
// {secret:client_secret} into the body; the plugin holds only the short-lived access token,
// for this run.
func (c *client) login(clientID string) error {
	form := "grant_type=client_credentials&scope=all-apis&client_id=" + url.QueryEscape(clientID) + "&client_secret={secret:client_secret}"
	resp, err := sdk.HTTP(abi.HTTPRequest{Method: "POST", URL: "/oidc/v1/token", Body: form, TimeoutMS: requestTimeoutMS,
		Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, MaxResponseBytes: 64 << 10})
	if err != nil {
		return fmt.Errorf("Databricks OAuth token: %w", err)
	}
	c.requests++
	if resp.Status != 200 {
		return wrap(answerError("POST /oidc/v1/token", resp))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &tok); err != nil || tok.AccessToken == "" {
		return fmt.Errorf("Databricks OAuth token: the answer holds no access_token")
	}
	c.auth, c.clientID, c.loginAt = "Bearer "+tok.AccessToken, clientID, time.Now()
	return nil
}

// statementResult is the Statement Execution API's StatementResponse, the parts used here.
type statementResult struct {
	StatementID string `json:"statement_id"`
	Status      struct {
		State string `json:"state"`
		Error *struct {
			ErrorCode string `json:"error_code"`
			Message   string `json:"message"`
		} `json:"error"`
	} `json:"status"`
	Manifest struct {
		Schema struct {
			Columns []struct {
				Name string `json:"name"`
			} `json:"columns"`
		} `json:"schema"`
	} `json:"manifest"`
	Result struct {
		DataArray [][]*string `json:"data_array"`
	} `json:"result"`
}

// value is the first row's value of the named column, as an integer (COPY INTO and MERGE
// answer num_inserted_rows, ...); -1 when absent.
func (r *statementResult) value(name string) int64 {
	for i, col := range r.Manifest.Schema.Columns {
		if col.Name != name || len(r.Result.DataArray) == 0 || i >= len(r.Result.DataArray[0]) || r.Result.DataArray[0][i] == nil {
			continue
		}
		if n, err := strconv.ParseInt(*r.Result.DataArray[0][i], 10, 64); err == nil {
			return n
		}
	}
	return -1
}

// retryable statement error codes: the warehouse or the service is busy or starting.
var transientCodes = map[string]bool{
	"TEMPORARILY_UNAVAILABLE": true, "RESOURCE_EXHAUSTED": true, "REQUEST_LIMIT_EXCEEDED": true,
	"DEADLINE_EXCEEDED": true, "INTERNAL_ERROR": true, "UNAVAILABLE": true, "ABORTED": true,
}

// exec runs one statement on the warehouse and waits for it: the POST waits up to
// statement_timeout_seconds on the server, then the plugin polls GET
// /api/2.0/sql/statements/{id} while it is PENDING or RUNNING, until the guest call's
// budget, after which it cancels the statement and fails (retryably).
func (c *client) exec(sql string) (*statementResult, error) {
	wait := c.waitS
	if left := time.Until(c.deadline) - 10*time.Second; left < time.Duration(wait)*time.Second {
		wait = max(5, int(left/time.Second))
	}
	body, _ := json.Marshal(map[string]any{"warehouse_id": c.warehouse, "statement": sql, "wait_timeout": fmt.Sprintf("%ds", wait),
		"on_wait_timeout": "CONTINUE", "disposition": "INLINE", "format": "JSON_ARRAY"})
	var r statementResult
	if err := c.do("POST", "/api/2.0/sql/statements", string(body), nil, map[string]string{"Content-Type": "application/json"}, &r); err != nil {
		return nil, err
	}
	for pause := 200 * time.Millisecond; r.Status.State == "PENDING" || r.Status.State == "RUNNING"; pause = min(2*pause, 2*time.Second) {
		if time.Now().Add(pause).After(c.deadline) {
			_ = c.do("POST", "/api/2.0/sql/statements/"+url.PathEscape(r.StatementID)+"/cancel", "", nil, nil, nil)
			return nil, wrap(&apiError{Op: "statement", State: "TIMEOUT", ErrorCode: "DEADLINE_EXCEEDED", Retryable: true,
				Message: fmt.Sprintf("statement %s still %s when this call's time ran out; cancelled (a warehouse that is starting: the retry finds it running)", r.StatementID, r.Status.State)})
		}
		time.Sleep(pause)
		if err := c.do("GET", "/api/2.0/sql/statements/"+url.PathEscape(r.StatementID), "", nil, nil, &r); err != nil {
			return nil, err
		}
	}
	if r.Status.State == "SUCCEEDED" {
		return &r, nil
	}
	e := &apiError{Op: "statement", State: r.Status.State, Message: "the statement ended " + r.Status.State}
	if r.Status.Error != nil {
		e.ErrorCode, e.Message = r.Status.Error.ErrorCode, r.Status.Error.Message
	}
	e.Retryable = transientCodes[e.ErrorCode]
	return nil, wrap(e)
}
