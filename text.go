package tollgate

import (
	"fmt"
	"strings"
)

// Text that users type (token names and descriptions, e-mail addresses)
// is shown again in terminals (the CLI's tables), web pages (the console)
// and logs. A character that changes how the text around it is shown
// could make a token's name pass for a command or rewrite a terminal:
// such characters are refused on the way in (ControlRuleMessage) and
// escaped on the way out (EscapeText), for rows stored before the rule.

// IsControl reports whether r is a control character in that sense: C0
// and C1 controls (line breaks, tab, ESC), DEL, the line and paragraph
// separators and the bidirectional embeddings, overrides, isolates and
// marks.
func IsControl(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// ControlRuleMessage is the field error of text with a control character.
const ControlRuleMessage = "must not contain control characters (line breaks, tabs, escape sequences or bidirectional overrides)"

// checkNoControl refuses s if it holds a control character (IsControl).
func checkNoControl(field, s string) error {
	if strings.ContainsFunc(s, IsControl) {
		return FieldError(field, ControlRuleMessage)
	}
	return nil
}

// EscapeText returns s with every control character (IsControl) and
// every byte that is not UTF-8 written as a visible Go escape (\n, \x1b,
// \u202e), so that stored text prints as text and nothing else.
func EscapeText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return IsControl(r) || r == 0xfffd }) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == 0xfffd && !strings.HasPrefix(s[i:], "\ufffd"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
