package tollgate

import "testing"

// hostile is text that would rewrite a terminal or reorder what is shown
// around it if it were printed as it is.
var hostile = map[string]string{
	"newline":        "ci\ndocker login evil.example",
	"carriage":       "ci\rrm -rf",
	"tab":            "ci\tx",
	"escape":         "ci\x1b[2J\x1b]0;owned\x07",
	"c1 csi":         "ci\u009b2J",
	"delete":         "ci\x7f",
	"nul":            "ci\x00",
	"bidi override":  "ci\u202egnp.exe",
	"bidi embedding": "ci\u202ax",
	"bidi isolate":   "ci\u2067x\u2069",
	"line separator": "ci\u2028x",
}

// TestTokenTextCannotCarryTerminalEscapes: names and descriptions are
// printed by the CLI and the console; a control character in one could
// pass for a command or take over the terminal of whoever lists tokens.
// (store/storetest checks the same through Service, on both stores.)
func TestTokenTextCannotCarryTerminalEscapes(t *testing.T) {
	for what, s := range hostile {
		if err := ValidateTokenName(s); ErrorMessage(err) != "name: "+ControlRuleMessage {
			t.Errorf("name with %s: %v", what, err)
		}
		if err := ValidateTokenDescription(s); ErrorMessage(err) != "description: "+ControlRuleMessage {
			t.Errorf("description with %s: %v", what, err)
		}
		if _, err := ValidateEmail("a" + s + "@acme.example"); ErrorField(err) != "email" {
			t.Errorf("email with %s: %v", what, err)
		}
	}
	for _, ok := range []string{"prod pull — eu", "CI «main» 🚀", `C:\path`} {
		if ValidateTokenName(ok) != nil || ValidateTokenDescription(ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
}

// TestEscapedTextCannotReachTheTerminal: what EscapeText returns holds no
// control character, and plain text is left alone.
func TestEscapedTextCannotReachTheTerminal(t *testing.T) {
	for what, s := range hostile {
		out := EscapeText(s + "\xff")
		for _, r := range out {
			if IsControl(r) {
				t.Errorf("%s: %q still holds %U", what, out, r)
			}
		}
	}
	if got := EscapeText("ci\x1b[2J\u202e\n"); got != `ci\x1b[2J\u202e\n` {
		t.Errorf("EscapeText = %q", got)
	}
	if got := EscapeText("prod — eu \ufffd"); got != "prod — eu \ufffd" {
		t.Errorf("plain text changed: %q", got)
	}
}
