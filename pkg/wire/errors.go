package wire

import (
	"errors"
	"fmt"
	"net/http"
)

// Local sentinels for subject handling (they never cross the wire as such; a sidecar reports them
// as CodeInvalidArgument).
var (
	// ErrInvalidToken: a host, trigger or command token is empty, too long or has a character that
	// is not allowed in one subject token.
	ErrInvalidToken = errors.New("wire: invalid subject token")
	// ErrInvalidSubject: a subject does not have the documented shape.
	ErrInvalidSubject = errors.New("wire: invalid subject")
)

// Code is a stable error code carried by every error that crosses NATS or HTTP. Codes are never
// renumbered or reused; new codes are only appended.
type Code int

// The error codes. The HTTP status each maps to is in parentheses.
const (
	CodeBadRequest      Code = 1000 // (400) the request body is not valid JSON for the command
	CodeUnknownCommand  Code = 1001 // (404) the subject's or path's command is not a known Command
	CodeInvalidArgument Code = 1002 // (400) a field is out of range, missing or malformed
	CodeInvalidExpr     Code = 1003 // (400) a filter, aggregate or trigger expression does not parse or type-check
	CodeLimitExceeded   Code = 1004 // (400) a requested limit is larger than the sidecar allows
	CodeNotFound        Code = 1005 // (404) a named multilog, filter, aggregate, trigger or index does not exist
	CodeAlreadyExists   Code = 1006 // (409) a name is already taken
	CodeBusy            Code = 1007 // (429) too many concurrent queries; retry later
	CodeTimeout         Code = 1008 // (504) the operation did not finish within its time limit
	CodeUnavailable     Code = 1009 // (503) the sidecar is starting or shutting down
	CodeInternal        Code = 1010 // (500) anything else; the description says what
	CodeForbidden       Code = 1011 // (403) the request is not allowed (for example another host's subject)
	CodeTooLarge        Code = 1012 // (413) the request body is larger than MaxRequestBytes
)

var codeNames = map[Code]string{
	CodeBadRequest:      "bad_request",
	CodeUnknownCommand:  "unknown_command",
	CodeInvalidArgument: "invalid_argument",
	CodeInvalidExpr:     "invalid_expression",
	CodeLimitExceeded:   "limit_exceeded",
	CodeNotFound:        "not_found",
	CodeAlreadyExists:   "already_exists",
	CodeBusy:            "busy",
	CodeTimeout:         "timeout",
	CodeUnavailable:     "unavailable",
	CodeInternal:        "internal",
	CodeForbidden:       "forbidden",
	CodeTooLarge:        "too_large",
}

var codeStatus = map[Code]int{
	CodeBadRequest:      http.StatusBadRequest,
	CodeUnknownCommand:  http.StatusNotFound,
	CodeInvalidArgument: http.StatusBadRequest,
	CodeInvalidExpr:     http.StatusBadRequest,
	CodeLimitExceeded:   http.StatusBadRequest,
	CodeNotFound:        http.StatusNotFound,
	CodeAlreadyExists:   http.StatusConflict,
	CodeBusy:            http.StatusTooManyRequests,
	CodeTimeout:         http.StatusGatewayTimeout,
	CodeUnavailable:     http.StatusServiceUnavailable,
	CodeInternal:        http.StatusInternalServerError,
	CodeForbidden:       http.StatusForbidden,
	CodeTooLarge:        http.StatusRequestEntityTooLarge,
}

// String is the code's stable name, for example "not_found".
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code_%d", int(c))
}

// HTTPStatus is the HTTP status the local API answers with for this code.
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error that crosses the wire: {"code": 1005, "description": "..."}. Errors compare
// equal under errors.Is when their codes are equal, so errors.Is(err, wire.ErrNotFound) works on
// any *Error with CodeNotFound. Safe for concurrent use (immutable).
type Error struct {
	Code        Code   `json:"code"`
	Description string `json:"description"`
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("wire: %s (%d): %s", e.Code, int(e.Code), e.Description)
}

// Is matches any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrBadRequest      = &Error{CodeBadRequest, "bad request"}
	ErrUnknownCommand  = &Error{CodeUnknownCommand, "unknown command"}
	ErrInvalidArgument = &Error{CodeInvalidArgument, "invalid argument"}
	ErrInvalidExpr     = &Error{CodeInvalidExpr, "invalid expression"}
	ErrLimitExceeded   = &Error{CodeLimitExceeded, "limit exceeded"}
	ErrNotFound        = &Error{CodeNotFound, "not found"}
	ErrAlreadyExists   = &Error{CodeAlreadyExists, "already exists"}
	ErrBusy            = &Error{CodeBusy, "busy"}
	ErrTimeout         = &Error{CodeTimeout, "timeout"}
	ErrUnavailable     = &Error{CodeUnavailable, "unavailable"}
	ErrInternal        = &Error{CodeInternal, "internal error"}
	ErrForbidden       = &Error{CodeForbidden, "forbidden"}
	ErrTooLarge        = &Error{CodeTooLarge, "request too large"}
)

// Errorf returns a coded error with a formatted description.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Wrap returns a coded error whose description is err's text. If err already is (or wraps) an
// *Error, that error is returned unchanged. Wrap(nil) is nil.
func Wrap(code Code, err error) *Error {
	if err == nil {
		return nil
	}
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	return &Error{Code: code, Description: err.Error()}
}
