package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzReadRequest: whatever arrives on stdin, the request parser returns
// a request with the version, kind and image it checked, or an error on
// one line that quotes no token.
func FuzzReadRequest(f *testing.F) {
	f.Add(kubeletRequest("registry.example.com/acme/app:v1", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"))
	f.Add(nodeRequest("registry.example.com/acme/app"))
	f.Add(`{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":1}`)
	f.Add(`{"serviceAccountToken":"secret-token-value"}`)
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		req, err := readRequest(strings.NewReader(in))
		if err != nil {
			if strings.Contains(oneLine(err.Error()), "\n") {
				t.Fatal("multi-line error")
			}
			if strings.Contains(err.Error(), "secret-token-value") {
				t.Fatalf("error quotes the token: %v", err)
			}
			return
		}
		if req.APIVersion != apiVersion || req.Kind != requestKind || req.Image == "" {
			t.Fatalf("accepted %q %q image %q", req.APIVersion, req.Kind, req.Image)
		}
	})
}

// FuzzExchangeAnswer: whatever tollgate (or something pretending to be
// it) answers, the provider's reading of it never panics, never lets the
// subject token into an error, and returns a credential only from a 200
// with a printable access_token of the access_token type.
func FuzzExchangeAnswer(f *testing.F) {
	f.Add(200, `{"access_token":"tge_x","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"N_A","expires_in":900}`, "")
	f.Add(400, `{"error":"invalid_grant","error_description":"SUBJECT"}`, "")
	f.Add(429, `{"error":"slow_down"}`, "SUBJECT")
	f.Add(302, ``, "https://elsewhere.example/SUBJECT")
	f.Add(200, `{"access_token":"a b","expires_in":-1}`, "")
	f.Add(503, `<html>`, "")
	const subject = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.SUBJECT"
	endpoint, _ := url.Parse("https://registry.example.com/oauth2/token")
	f.Fuzz(func(t *testing.T, status int, body, header string) {
		if status < 100 || status > 999 {
			return
		}
		body = strings.ReplaceAll(body, "SUBJECT", subject)
		header = strings.ReplaceAll(header, "SUBJECT", subject)
		var err error
		if status == http.StatusOK {
			var c *credential
			if c, err = parseCredential(endpoint, []byte(body)); err == nil {
				if c.token == "" || strings.ContainsAny(c.token, " \t\r\n") || c.lifetime < 0 {
					t.Fatalf("accepted credential %q lifetime %v", c.token, c.lifetime)
				}
				return
			}
		} else {
			resp := &http.Response{StatusCode: status, Header: http.Header{"Location": {header}, "Retry-After": {header}}}
			err = refusal(endpoint, resp, []byte(body), subject)
		}
		if err == nil {
			t.Fatal("no error")
		}
		if msg := oneLine(err.Error()); strings.Contains(msg, subject) {
			t.Fatalf("error carries the subject token: %s", msg)
		}
	})
}
