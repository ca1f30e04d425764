package tollgate

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestRepositoryNameCannotMakePatternMatchingExplode: entitlement and
// anonymous patterns are matched against the repository name of every
// request, a name the caller chooses (up to 255 characters). The matcher
// backtracked: with a few '*' in a pattern and a name built to almost
// match, one decision took seconds to hours of CPU.
func TestRepositoryNameCannotMakePatternMatchingExplode(t *testing.T) {
	done := make(chan bool)
	go func() {
		done <- MatchPattern("*a*a*a*a*a*c", strings.Repeat("a", 254)+"b") ||
			MatchPattern("a**a**a**a**a**c", strings.Repeat("a", 254)+"b") ||
			MatchPattern("*?*?*?*?*/x", strings.Repeat("a", 250)+"/y")
	}()
	select {
	case matched := <-done:
		if matched {
			t.Fatal("matched")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("three pattern matches took more than 10 s")
	}
}

// TestPatternMatchingIsUnchanged compares match with the plain
// backtracking matcher it replaced, on short random patterns and names.
func TestPatternMatchingIsUnchanged(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(alphabet string, n int) string {
		var b strings.Builder
		for range r.IntN(n + 1) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 200_000 {
		p, s := pick("ab/*?", 8), pick("ab/", 8)
		if got, want := match(p, s), backtrack(p, s); got != want {
			t.Fatalf("match(%q, %q) = %v, want %v", p, s, got, want)
		}
	}
}

// backtrack is the matcher as it was: right, but exponential.
func backtrack(p, s string) bool {
	for len(p) > 0 {
		switch {
		case strings.HasPrefix(p, "**"):
			for i := 0; i <= len(s); i++ {
				if backtrack(p[2:], s[i:]) {
					return true
				}
			}
			return false
		case p[0] == '*':
			for i := 0; i <= len(s); i++ {
				if backtrack(p[1:], s[i:]) {
					return true
				}
				if i < len(s) && s[i] == '/' {
					return false
				}
			}
			return false
		case p[0] == '?':
			if s == "" || s[0] == '/' {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}
