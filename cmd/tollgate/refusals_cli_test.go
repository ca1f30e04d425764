package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/tollgate/tollgate"
)

// TestTokenRefusalsThroughCLI: crane pulls with a token bound to networks
// the client is not in, and is refused; `token show` then prints that
// attempt (time, address, client, why) as the console's card does, and
// `token refusals -o json` gives it to scripts. The secret is printed by
// neither.
func TestTokenRefusalsThroughCLI(t *testing.T) {
	c, d := devCLI(t) // webhooks_test.go
	var tok struct{ ID, Secret string }
	c.json(&tok, "token", "create", "--account", "demo", "--name", "office-only", "--networks", "10.0.0.0/8")
	if tok.Secret == "" {
		t.Fatalf("create printed no secret: %+v", tok)
	}
	if out := c.ok("token", "show", tok.ID); !strings.Contains(out, "Refused attempts: none") {
		t.Fatalf("token show of a token never refused:\n%s", out)
	}

	host := strings.TrimPrefix(d.Main.URL, "http://")
	_, err := crane.Digest(host+"/demo/hello:latest", crane.Insecure, crane.WithUserAgent("ci-runner/1.0"),
		crane.WithAuth(&authn.Basic{Username: tollgate.SetupUsername, Password: tok.Secret}))
	if err == nil {
		t.Fatal("crane pulled from 127.0.0.1 with a token bound to 10.0.0.0/8")
	}

	// The edge hands refusals to a recorder that writes them every second.
	var show string
	deadline := time.Now().Add(10 * time.Second)
	for {
		show = c.ok("token", "show", tok.ID)
		if strings.Contains(show, "outside its networks (address_not_allowed)") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var row string
	for _, line := range strings.Split(show, "\n") {
		if strings.Contains(line, "address_not_allowed") {
			row = line
		}
	}
	for _, want := range []string{"127.0.0.1", "ci-runner/1.0", "outside its networks (address_not_allowed)", time.Now().UTC().Format("2006-01-02T")} {
		if !strings.Contains(row, want) {
			t.Errorf("token show's refusal row lacks %q:\n%s", want, show)
		}
	}
	if !strings.Contains(show, "TIME") || !strings.Contains(show, "CLIENT") {
		t.Errorf("token show prints no refusal table header:\n%s", show)
	}

	var rl struct {
		Token    string
		Refusals []struct {
			At                         time.Time
			Address, UserAgent, Reason string
		} `json:"refusals"`
	}
	c.json(&rl, "token", "refusals", tok.ID)
	if rl.Token != tok.ID || len(rl.Refusals) == 0 || rl.Refusals[0].Address != "127.0.0.1" || rl.Refusals[0].Reason != "address_not_allowed" {
		t.Fatalf("token refusals -o json = %+v", rl)
	}
	text := c.ok("token", "refusals", tok.ID)
	for name, out := range map[string]string{"token show": show, "token refusals": text} {
		if strings.Contains(out, tok.Secret) {
			t.Errorf("%s prints the secret:\n%s", name, out)
		}
	}
	if msg := c.fail("token", "refusals", "tok_nonexistent"); !strings.Contains(msg, "not found") {
		t.Errorf("refusals of an unknown token: %q", msg)
	}
}
