package tollgate

import (
	"strconv"
	"strings"
	"time"
)

// AccountStatus says whether an account's tokens work.
type AccountStatus string

const (
	AccountActive    AccountStatus = "active"
	AccountSuspended AccountStatus = "suspended" // every token stops working
)

// PackageAccess is the state of an account's request for package access.
// Only "granted" lets tokens carry the packages scope.
type PackageAccess string

const (
	PackageAccessNone      PackageAccess = "none"
	PackageAccessRequested PackageAccess = "requested"
	PackageAccessGranted   PackageAccess = "granted"
	PackageAccessDenied    PackageAccess = "denied"
)

// Valid reports whether p is one of the four states.
func (p PackageAccess) Valid() bool {
	switch p {
	case PackageAccessNone, PackageAccessRequested, PackageAccessGranted, PackageAccessDenied:
		return true
	}
	return false
}

// Account is a customer. Its name is unique and is what humans type.
type Account struct {
	ID            string
	Name          string
	Status        AccountStatus
	PackageAccess PackageAccess
	Subscription  Subscription
	// Policy is what the operator requires of every token of the account.
	Policy    AccountPolicy
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Subscription is what an account is entitled to pull.
//
// Images holds glob patterns over repository names (see MatchPattern);
// Packages holds package repository names (patterns allowed too, so "*"
// entitles every configured repository).
type Subscription struct {
	Images   []string
	Packages []string
}

// EntitledImage reports whether the subscription covers repository name.
func (s Subscription) EntitledImage(name string) bool {
	for _, p := range s.Images {
		if matchStored(p, name) {
			return true
		}
	}
	return false
}

// EntitledPackages reports whether the subscription covers package repo.
func (s Subscription) EntitledPackages(repo string) bool {
	for _, p := range s.Packages {
		if matchStored(p, repo) {
			return true
		}
	}
	return false
}

// Validate checks every pattern; errors name the field path
// ("images[2]").
func (s Subscription) Validate() error {
	for i, p := range s.Images {
		if err := ValidatePattern(p); err != nil {
			return FieldError(indexField("images", i), "%s", err.(*Error).Message)
		}
	}
	for i, p := range s.Packages {
		if err := ValidatePattern(p); err != nil {
			return FieldError(indexField("packages", i), "%s", err.(*Error).Message)
		}
	}
	return nil
}

func indexField(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}

// ValidateAccountName checks the rule for account names: 1 to 63
// characters of a-z, 0-9 and '-', not starting or ending with '-'.
func ValidateAccountName(name string) error {
	if name == "" {
		return FieldError("name", "must not be empty")
	}
	if len(name) > 63 {
		return FieldError("name", "must be at most 63 characters")
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return FieldError("name", "may contain only a-z, 0-9 and '-'")
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return FieldError("name", "must not start or end with '-'")
	}
	return nil
}

// ValidPackageRepoName reports whether name can name a package
// repository (the REPO of /apt/REPO/ and /apk/REPO/): 1 to 63 of a-z, 0-9,
// '.', '_' and '-', starting with a letter or digit. The proxy checks it
// again on every request, so that a path can never name another place.
func ValidPackageRepoName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i, c := range []byte(name) {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Pattern semantics, for image repository names such as "team-a/nginx":
//
//   - any run of characters except '/' (one path component or part of it)
//     **   any run of characters, '/' included (any depth)
//     ?    exactly one character other than '/'
//     else the character itself; matching is case-sensitive and anchored
//
// So "nginx" matches only nginx; "python*" matches python, python3 and
// python-slim but not python/tools; "team-a/*" matches team-a/app but not
// team-a/app/db nor team-a itself; "team-a/**" matches everything below
// team-a/; "**" matches every repository.
const patternChars = "abcdefghijklmnopqrstuvwxyz0123456789._-/*?"

// ValidatePattern checks that p is a well-formed pattern: 1 to 255
// characters of lowercase letters, digits, '.', '_', '-', '/', '*' and '?',
// no empty path component, no more than two '*' in a row.
func ValidatePattern(p string) error {
	if p == "" {
		return Errorf(EINVALID, "pattern must not be empty")
	}
	if len(p) > 255 {
		return Errorf(EINVALID, "pattern %q is longer than 255 characters", p)
	}
	for _, c := range p {
		if !strings.ContainsRune(patternChars, c) {
			return Errorf(EINVALID, "pattern %q may contain only a-z, 0-9, '.', '_', '-', '/', '*' and '?'", p)
		}
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return Errorf(EINVALID, "pattern %q has an empty path component", p)
	}
	if strings.Contains(p, "***") {
		return Errorf(EINVALID, "pattern %q has more than two '*' in a row", p)
	}
	return nil
}

// MatchPattern reports whether name matches pattern p (semantics above).
// An invalid pattern matches nothing.
func MatchPattern(p, name string) bool {
	return validPatternFast(p) && matchStored(p, name)
}

// matchStored is MatchPattern for patterns that were validated when they
// were stored (subscriptions, restrictions: on the request path, so the
// check is not repeated). An invalid pattern still cannot match a valid
// repository name: its characters or empty components never occur in one.
func matchStored(p, name string) bool {
	// The shapes subscriptions and restrictions are made of, without the
	// general matcher: a literal, "prefix/**", "prefix/*" and "**".
	star := strings.IndexByte(p, '*')
	if q := strings.IndexByte(p, '?'); q >= 0 {
		return match(p, name)
	}
	switch {
	case star < 0:
		return p == name
	case p == "**":
		return name != ""
	case star == len(p)-2 && strings.HasSuffix(p, "/**"):
		return len(name) > len(p)-2 && strings.HasPrefix(name, p[:len(p)-2])
	case star == len(p)-1 && strings.HasSuffix(p, "/*"):
		rest, ok := strings.CutPrefix(name, p[:len(p)-1])
		return ok && rest != "" && !strings.Contains(rest, "/")
	}
	return match(p, name)
}

// patternByte marks the bytes a pattern may hold.
var patternByte = func() (t [256]bool) {
	for i := 0; i < len(patternChars); i++ {
		t[patternChars[i]] = true
	}
	return t
}()

// validPatternFast is ValidatePattern without building an error.
func validPatternFast(p string) bool {
	if p == "" || len(p) > 255 || p[0] == '/' || p[len(p)-1] == '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !patternByte[p[i]] {
			return false
		}
	}
	return !strings.Contains(p, "//") && !strings.Contains(p, "***")
}

func match(p, s string) bool {
	if starRuns(p) < 2 {
		// One star (or "**") backtracks over the name once: quadratic
		// at worst.
		return matchFrom(p, s, nil)
	}
	// Several stars: the caller chooses the name, and plain backtracking
	// is exponential in the number of stars. Remember which (pattern
	// rest, name rest) pairs failed so that none is tried twice.
	f := &failed{w: len(s) + 1}
	f.bits = make([]uint64, ((len(p)+1)*f.w+63)/64)
	return matchFrom(p, s, f)
}

// starRuns counts the runs of '*' in p.
func starRuns(p string) int {
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '*' && (i == 0 || p[i-1] != '*') {
			n++
		}
	}
	return n
}

// failed is a set of (pattern rest, name rest) pairs, by their lengths.
type failed struct {
	w    int
	bits []uint64
}

func (f *failed) key(p, s string) int { return len(p)*f.w + len(s) }

// matchFrom is match for a pattern rest and a name rest; f, if not nil,
// remembers the pairs that did not match.
func matchFrom(p, s string, f *failed) bool {
	if f == nil {
		return matchSteps(p, s, nil)
	}
	k := f.key(p, s)
	if f.bits[k/64]&(1<<(k%64)) != 0 {
		return false
	}
	if matchSteps(p, s, f) {
		return true
	}
	f.bits[k/64] |= 1 << (k % 64)
	return false
}

func matchSteps(p, s string, f *failed) bool {
	for len(p) > 0 {
		switch {
		case strings.HasPrefix(p, "**"):
			rest := p[2:]
			for i := 0; i <= len(s); i++ {
				if matchFrom(rest, s[i:], f) {
					return true
				}
			}
			return false
		case p[0] == '*':
			rest := p[1:]
			for i := 0; i <= len(s); i++ {
				if matchFrom(rest, s[i:], f) {
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
