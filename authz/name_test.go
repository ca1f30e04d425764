package authz

import (
	"regexp"
	"testing"
)

// The grammars as regular expressions, as the specs write them; the hand
// written matchers must agree with them on every input.
var (
	pathRE      = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	scopeTypeRE = regexp.MustCompile(`^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$`)
	scopeNameRE = regexp.MustCompile(`^(?:` +
		`[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/` +
		`)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
)

var nameSeeds = []string{
	"", "a", "library/nginx", "a/b/c", "a__b", "a___b", "a._b", "a--b", "a-", "-a", "a/", "/a", "a//b",
	"A", "a.b.c", "a_b", "a.-b", "localhost:5000/a", "Example.COM:443/x/y", "host:/a", "host:x/a",
	"-host/a", "host-/a", "ho-st.ex-ample/a_b", "a:1", "a/b:1", "1.2.3.4:5000/a", "h..x/a", "h/A",
	"repository", "repository(plugin)", "repository(", "repository()", "(x)", "a(b)c", "a(b)(c)", "a(B)",
}

func checkNameGrammar(t *testing.T, s string) {
	if got, want := ValidRepositoryPath(s), pathRE.MatchString(s); got != want {
		t.Errorf("ValidRepositoryPath(%q) = %v, the grammar says %v", s, got, want)
	}
	if got, want := validScopeName(s), scopeNameRE.MatchString(s); got != want {
		t.Errorf("validScopeName(%q) = %v, the grammar says %v", s, got, want)
	}
	typ, class, ok := parseScopeType(s)
	m := scopeTypeRE.FindStringSubmatch(s)
	if ok != (m != nil) || (ok && (typ != m[1] || class != m[2])) {
		t.Errorf("parseScopeType(%q) = %q, %q, %v; the grammar says %q", s, typ, class, ok, m)
	}
}

func TestNameGrammars(t *testing.T) {
	for _, s := range nameSeeds {
		checkNameGrammar(t, s)
	}
}

func FuzzNameGrammars(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(checkNameGrammar)
}
