// Package codec encodes the values both stores keep as JSON text
// (subscription lists, audit changes) the same way.
package codec

import (
	"encoding/json"
	"strings"

	"github.com/tollgate/tollgate"
)

func NullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// MarshalSubscription stores a nil list as "[]".
func MarshalSubscription(s tollgate.Subscription) (images, packages string, err error) {
	if images, err = MarshalList(s.Images); err != nil {
		return "", "", err
	}
	packages, err = MarshalList(s.Packages)
	return images, packages, err
}

func MarshalList(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// UnmarshalList reads an empty list as nil.
func UnmarshalList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

func MarshalChanges(c map[string]tollgate.Change) (string, error) {
	if len(c) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(c)
	return string(b), err
}

// UnmarshalChanges reads an empty object as nil.
func UnmarshalChanges(s string) (map[string]tollgate.Change, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var c map[string]tollgate.Change
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, nil
	}
	return c, nil
}
