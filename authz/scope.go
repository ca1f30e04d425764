package authz

import (
	"fmt"
	"strings"

	"github.com/tollgate/tollgate"
)

// Limits on what a token request may ask for. A docker pull asks for one
// or two scopes; the caps only bound the work an abusive request causes.
const (
	maxScopes        = 64  // distinct resource scopes in one request
	maxScopesSeen    = 256 // resource scopes parsed, duplicates included
	maxScopeTypeLen  = 64
	maxScopeNameLen  = 255
	maxScopeActsLen  = 255
	maxErrorEchoLen  = 100 // input echoed back in an error message
	scopeErrorField  = "scope"
	scopeErrorPrefix = "invalid resource scope"
)

// ResourceScope is one resource scope of a token request, as in
// "repository:library/nginx:pull" or "repository(plugin):x:pull,push".
//
// Class is parsed and kept but carries no meaning: the distribution spec
// deprecates it and treats "repository(plugin)" as "repository".
type ResourceScope struct {
	Type    string
	Class   string
	Name    string
	Actions []string
}

// String formats s in the scope grammar, e.g. for a challenge's scope.
func (s ResourceScope) String() string {
	var b strings.Builder
	b.WriteString(s.Type)
	if s.Class != "" {
		b.WriteString("(" + s.Class + ")")
	}
	b.WriteString(":" + s.Name + ":" + strings.Join(s.Actions, ","))
	return b.String()
}

// ParseResourceScope parses one resource scope:
//
//	resourcetype ':' resourcename ':' action [ ',' action ]*
//
// The type ends at the first ':' and the actions start after the last, so
// a name may carry a host:port prefix ("repository:localhost:5000/a:pull").
// An action is /[a-z*]*/; empty and repeated actions are dropped, so
// Actions may be empty but is never nil. Errors are EINVALID *tollgate.Error
// values whose message quotes at most 100 bytes of s.
func ParseResourceScope(s string) (ResourceScope, error) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first < 0 || first == last {
		return ResourceScope{}, scopeError(s, "want type:name:actions")
	}
	typ, name, acts := s[:first], s[first+1:last], s[last+1:]

	if len(typ) > maxScopeTypeLen {
		return ResourceScope{}, scopeError(s, "resource type too long")
	}
	typ, class, ok := parseScopeType(typ)
	if !ok {
		return ResourceScope{}, scopeError(s, "bad resource type")
	}
	if len(name) > maxScopeNameLen {
		return ResourceScope{}, scopeError(s, fmt.Sprintf("resource name longer than %d characters", maxScopeNameLen))
	}
	if !validScopeName(name) {
		return ResourceScope{}, scopeError(s, "bad resource name")
	}
	if len(acts) > maxScopeActsLen {
		return ResourceScope{}, scopeError(s, "actions too long")
	}
	actions := []string{}
	for a := range strings.SplitSeq(acts, ",") {
		if !validAction(a) {
			return ResourceScope{}, scopeError(s, "bad action")
		}
		if a != "" && !contains(actions, a) {
			actions = append(actions, a)
		}
	}
	return ResourceScope{Type: typ, Class: class, Name: name, Actions: actions}, nil
}

// ParseResourceScopes parses the scope parameters of a token request. Each
// value (GET repeats the parameter; POST sends one) holds resource scopes
// separated by spaces; empty values and extra spaces are skipped. Scopes
// naming the same type and resource are merged, whatever their class: the
// first one's place and class are kept, actions are unioned in order of
// appearance. No scopes at all (docker login) gives nil and no error.
//
// At most 64 distinct scopes are accepted. Errors are EINVALID
// *tollgate.Error values with Field "scope".
func ParseResourceScopes(values []string) ([]ResourceScope, error) {
	var out []ResourceScope
	seen := 0
	for _, v := range values {
		for s := range strings.SplitSeq(v, " ") {
			if s == "" {
				continue
			}
			if seen++; seen > maxScopesSeen {
				return nil, tollgate.FieldError(scopeErrorField, "too many resource scopes")
			}
			rs, err := ParseResourceScope(s)
			if err != nil {
				return nil, err
			}
			i := indexScope(out, rs.Type, rs.Name)
			if i < 0 {
				if len(out) == maxScopes {
					return nil, tollgate.FieldError(scopeErrorField, "more than %d resource scopes", maxScopes)
				}
				out = append(out, rs)
				continue
			}
			for _, a := range rs.Actions {
				if !contains(out[i].Actions, a) {
					out[i].Actions = append(out[i].Actions, a)
				}
			}
		}
	}
	return out, nil
}

func indexScope(list []ResourceScope, typ, name string) int {
	for i := range list {
		if list[i].Type == typ && list[i].Name == name {
			return i
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validAction reports whether a matches /[a-z*]*/.
func validAction(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; (c < 'a' || c > 'z') && c != '*' {
			return false
		}
	}
	return true
}

func scopeError(input, reason string) *tollgate.Error {
	return tollgate.FieldError(scopeErrorField, "%s %q: %s", scopeErrorPrefix, clip(input, maxErrorEchoLen), reason)
}

// clip cuts s to at most n bytes, marking the cut, and replaces bytes
// other than printable ASCII with '?', so that echoing it into a message
// or a log line stays short and plain.
func clip(s string, n int) string {
	cut := len(s) > n
	if cut {
		s = s[:n]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if cut {
		return string(b) + "..."
	}
	return string(b)
}
