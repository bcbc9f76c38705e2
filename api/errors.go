package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// FieldError names one input field at fault, as a dotted path into the request
// ("destination.config.bucket_name", "filters.properties[0].operator") or a query
// parameter name.
type FieldError = configschema.FieldError

// Error is an API error. Handlers render it as
//
//	{"error": {"code": "...", "message": "...", "fields": [{"field": "...", "message": "..."}]}}
//
// with Status as the HTTP status. A Controller returns one (or wraps one with %w) to
// choose the status and the message the client sees; any other error is a 500 whose
// details are only logged.
type Error struct {
	Status  int          `json:"-"`
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	// Exports and ExportsTotal name the live batch exports that block the change (a 409
	// for deleting a plugin version they pin): the first page of them, and how many.
	Exports      []ExportRef `json:"exports,omitempty"`
	ExportsTotal int64       `json:"exports_total,omitempty"`
}

// ExportRef names a batch export in an Error.
type ExportRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return fmt.Sprintf("%d %s: %s (%s)", e.Status, e.Code, e.Message, strings.Join(parts, "; "))
}

// Error codes.
const (
	CodeInvalidRequest   = "invalid_request"    // 400: malformed JSON, bad field values
	CodeUnauthorized     = "unauthorized"       // 401
	CodeForbidden        = "forbidden"          // 403: the token lacks the scope
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409
	CodeTooLarge         = "request_too_large"  // 413
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeInvalidPlugin    = "invalid_plugin"      // 422: a module the host refuses (Controller)
	CodeInvalidConfig    = "invalid_destination" // 422: the plugin's sluice_validate refused the config
	CodeNotReady         = "not_ready"           // 503
	CodeInternal         = "internal"            // 500
)

// BadRequest is a 400 naming the fields at fault.
func BadRequest(message string, fields ...FieldError) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: message, Fields: fields}
}

// InvalidPlugin is what a Controller returns from InstallPlugin for a module it refuses
// (wrong ABI, bad manifest, capability not granted): 422 with the message as is.
func InvalidPlugin(message string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalidPlugin, Message: message}
}

// InvalidDestination is what a Controller returns from ValidateDestination when the
// plugin refuses the config: 422, with field naming the config key at fault if known
// (it is reported as "destination.config.<field>").
func InvalidDestination(message, field string) *Error {
	e := &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalidConfig, Message: message}
	if field != "" {
		e.Fields = []FieldError{{Field: "destination.config." + field, Message: message}}
	}
	return e
}

func notFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: what + " not found"}
}

func fieldErr(field, msg string) FieldError { return FieldError{Field: field, Message: msg} }

// statusOf is the HTTP status an error is rendered with.
func statusOf(err error) int {
	ae, _ := toError(err)
	return ae.Status
}

// toError maps any error to the *Error the client sees; internal reports a server-side
// failure whose details must be logged rather than sent.
func toError(err error) (ae *Error, internal bool) {
	if errors.As(err, &ae) {
		out := *ae
		if out.Status == 0 {
			out.Status = http.StatusBadRequest
		}
		if out.Code == "" {
			out.Code = codeFor(out.Status)
		}
		return &out, out.Status >= 500 && out.Status != http.StatusServiceUnavailable
	}
	var fe configschema.FieldErrors
	if errors.As(err, &fe) {
		return BadRequest("invalid input", fe...), false
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		// Echo's own errors carry the status text ("Method Not Allowed"): lower-case it
		// whole, like our messages; another message keeps its case. Never index an
		// empty message (an HTTPError built with "" or an unknown status code).
		msg := strings.ToLower(http.StatusText(he.Code))
		if s, ok := he.Message.(string); ok && s != "" && he.Code < 500 && s != http.StatusText(he.Code) {
			msg = strings.ToLower(s[:1]) + s[1:]
		}
		if msg == "" {
			msg = "error " + strconv.Itoa(he.Code)
		}
		return &Error{Status: he.Code, Code: codeFor(he.Code), Message: msg}, he.Code >= 500
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: "request body exceeds the limit of " + formatBytes(mbe.Limit)}, false
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "not found"}, false
	case errors.Is(err, storage.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: "the change conflicts with the current state"}, false
	case errors.Is(err, storage.ErrInvalid):
		// Storage re-checks what the API validated; its messages name the rule broken.
		msg := strings.TrimPrefix(err.Error(), "storage: invalid input: ")
		return BadRequest(msg), false
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}, true
}

func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalidRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMedia
	case http.StatusUnprocessableEntity:
		return CodeInvalidConfig
	case http.StatusServiceUnavailable:
		return CodeNotReady
	}
	if status >= 500 {
		return CodeInternal
	}
	return CodeInvalidRequest
}

// errorHandler is the Echo HTTPErrorHandler: every error leaves as the JSON envelope.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae, internal := toError(err)
	if internal {
		s.log.Error("api: internal error", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if ae.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(ae.Status)
	} else {
		werr = c.JSON(ae.Status, map[string]*Error{"error": ae})
	}
	if werr != nil {
		s.log.Debug("api: write error response", "err", werr)
	}
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
