package authz

import "strings"

// The names a token request and a /v2/ path may carry, checked by hand:
// these run on every request, and a regexp match costs more than the rest
// of deciding. Each function is the grammar in its comment, exactly (a
// fuzz test holds them against those regular expressions).

// ValidRepositoryPath reports whether name is a repository name of the
// distribution spec, path components only:
//
//	[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*
//
// It does not bound the length.
func ValidRepositoryPath(name string) bool {
	for {
		i := strings.IndexByte(name, '/')
		if i < 0 {
			return validComponent(name)
		}
		if !validComponent(name[:i]) {
			return false
		}
		name = name[i+1:]
	}
}

// validComponent: [a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*. The token spec's
// separator /[_.]|__|[-]*/ is read as the reference grammar's [_.]|__|[-]+
// (an empty separator adds nothing).
func validComponent(s string) bool {
	i := 0
	for {
		start := i
		for i < len(s) && isLowerAlnum(s[i]) {
			i++
		}
		if i == start {
			return false // empty, or a separator not between alphanumerics
		}
		if i == len(s) {
			return true
		}
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// validScopeName: a repository path, or a host, '/' and a path:
//
//	hostname     := hostcomponent [ '.' hostcomponent ]* [ ':' port ]
//	hostcomponent:= [a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?
func validScopeName(name string) bool {
	if ValidRepositoryPath(name) {
		return true
	}
	i := strings.IndexByte(name, '/')
	return i > 0 && validHost(name[:i]) && ValidRepositoryPath(name[i+1:])
}

func validHost(h string) bool {
	if i := strings.IndexByte(h, ':'); i >= 0 {
		port := h[i+1:]
		if port == "" {
			return false
		}
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return false
			}
		}
		h = h[:i]
	}
	for {
		i := strings.IndexByte(h, '.')
		label := h
		if i >= 0 {
			label = h[:i]
		}
		if !validHostLabel(label) {
			return false
		}
		if i < 0 {
			return true
		}
		h = h[i+1:]
	}
}

// validHostLabel: [a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?
func validHostLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !isLowerAlnum(c) && !(c >= 'A' && c <= 'Z') && c != '-' {
			return false
		}
	}
	return true
}

// parseScopeType splits resourcetype := /[a-z0-9]+/ [ '(' /[a-z0-9]+/ ')' ]
// into its type and class.
func parseScopeType(s string) (typ, class string, ok bool) {
	typ = s
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return "", "", false
		}
		typ, class = s[:i], s[i+1:len(s)-1]
		if !lowerAlnum(class) {
			return "", "", false
		}
	}
	if !lowerAlnum(typ) {
		return "", "", false
	}
	return typ, class, true
}

// lowerAlnum: [a-z0-9]+
func lowerAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerAlnum(s[i]) {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
