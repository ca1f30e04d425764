package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// OCI distribution error codes used in envelopes.
const (
	codeUnauthorized    = "UNAUTHORIZED"
	codeDenied          = "DENIED"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeNameInvalid     = "NAME_INVALID"
	codeUnsupported     = "UNSUPPORTED"
	codeUnavailable     = "UNAVAILABLE"
	codeTooManyRequests = "TOOMANYREQUESTS"
)

type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// writeOCIError writes the distribution error envelope
// {"errors":[{"code","message","detail"}]} with the given status.
func writeOCIError(w http.ResponseWriter, status int, code, message string, detail any) {
	body, _ := json.Marshal(struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{Code: code, Message: message, Detail: detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	w.WriteHeader(status)
	w.Write(body)
}

// writeOAuthError writes the token endpoint's error shape (RFC 6749 §5.2),
// which docker and containerd both read, plus the OCI envelope's fields so
// that clients expecting either find a message.
func writeOAuthError(w http.ResponseWriter, status int, oauthCode, ociCode, message string) {
	body, _ := json.Marshal(map[string]any{
		"error":             oauthCode,
		"error_description": message,
		"errors":            []ociError{{Code: ociCode, Message: message}},
	})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
