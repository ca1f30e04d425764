package authz

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
)

func TestParseScope(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name string
		in   string
		want ResourceScope
		err  bool
	}{
		// The distribution spec's examples.
		{name: "spec pull", in: "repository:samalba/my-app:pull", want: ResourceScope{Type: "repository", Name: "samalba/my-app", Actions: []string{"pull"}}},
		{name: "spec pull push", in: "repository:samalba/my-app:pull,push", want: ResourceScope{Type: "repository", Name: "samalba/my-app", Actions: []string{"pull", "push"}}},
		{name: "spec catalog", in: "registry:catalog:*", want: ResourceScope{Type: "registry", Name: "catalog", Actions: []string{"*"}}},
		{name: "spec class", in: "repository(plugin):sample/plugin:pull", want: ResourceScope{Type: "repository", Class: "plugin", Name: "sample/plugin", Actions: []string{"pull"}}},
		{name: "class short name", in: "repository(plugin):x:pull", want: ResourceScope{Type: "repository", Class: "plugin", Name: "x", Actions: []string{"pull"}}},

		{name: "host port name", in: "repository:localhost:5000/foo/bar:pull", want: ResourceScope{Type: "repository", Name: "localhost:5000/foo/bar", Actions: []string{"pull"}}},
		{name: "dotted host", in: "repository:registry.example.com/team-a/app:pull", want: ResourceScope{Type: "repository", Name: "registry.example.com/team-a/app", Actions: []string{"pull"}}},
		{name: "upper-case host", in: "repository:Registry.Example.com:443/a:pull", want: ResourceScope{Type: "repository", Name: "Registry.Example.com:443/a", Actions: []string{"pull"}}},
		{name: "separators", in: "repository:a.b_c__d---e/f:pull", want: ResourceScope{Type: "repository", Name: "a.b_c__d---e/f", Actions: []string{"pull"}}},
		{name: "one-letter", in: "repository:a:pull", want: ResourceScope{Type: "repository", Name: "a", Actions: []string{"pull"}}},
		{name: "digits in type", in: "repo2:a:pull", want: ResourceScope{Type: "repo2", Name: "a", Actions: []string{"pull"}}},
		{name: "three actions", in: "repository:a:pull,push,delete", want: ResourceScope{Type: "repository", Name: "a", Actions: []string{"pull", "push", "delete"}}},
		{name: "repeated action dropped", in: "repository:a:pull,pull", want: ResourceScope{Type: "repository", Name: "a", Actions: []string{"pull"}}},
		{name: "empty action dropped", in: "repository:a:pull,", want: ResourceScope{Type: "repository", Name: "a", Actions: []string{"pull"}}},
		{name: "no action", in: "repository:a:", want: ResourceScope{Type: "repository", Name: "a", Actions: []string{}}},
		{name: "longest name", in: "repository:" + long + ":pull", want: ResourceScope{Type: "repository", Name: long, Actions: []string{"pull"}}},

		{name: "empty", in: "", err: true},
		{name: "no colon", in: "repository", err: true},
		{name: "one colon", in: "repository:a", err: true},
		{name: "host port without actions", in: "repository:localhost:5000/a", err: true},
		{name: "empty type", in: ":a:pull", err: true},
		{name: "empty name", in: "repository::pull", err: true},
		{name: "upper-case type", in: "Repository:a:pull", err: true},
		{name: "empty class", in: "repository():a:pull", err: true},
		{name: "unclosed class", in: "repository(plugin:a:pull", err: true},
		{name: "nested class", in: "repository(a(b)):a:pull", err: true},
		{name: "upper-case action", in: "repository:a:PULL", err: true},
		{name: "action with digit", in: "repository:a:pull2", err: true},
		{name: "space in actions", in: "repository:a:pull, push", err: true},
		{name: "upper-case path", in: "repository:Foo:pull", err: true},
		{name: "upper-case path after host", in: "repository:host/Foo:pull", err: true},
		{name: "trailing slash", in: "repository:a/:pull", err: true},
		{name: "leading slash", in: "repository:/a:pull", err: true},
		{name: "double slash", in: "repository:a//b:pull", err: true},
		{name: "dot dot", in: "repository:a/../b:pull", err: true},
		{name: "leading separator", in: "repository:-a:pull", err: true},
		{name: "trailing separator", in: "repository:a-:pull", err: true},
		{name: "port without path", in: "repository:host:5000:pull", err: true},
		{name: "port not numeric", in: "repository:host:http/a:pull", err: true},
		{name: "two ports", in: "repository:a:1:2/b:pull", err: true},
		{name: "percent escape", in: "repository:a%2fb:pull", err: true},
		{name: "newline", in: "repository:a\n:pull", err: true},
		{name: "NUL", in: "repository:a\x00:pull", err: true},
		{name: "unicode", in: "repository:ä:pull", err: true},
		{name: "name too long", in: "repository:" + long + "a:pull", err: true},
		{name: "type too long", in: strings.Repeat("a", 65) + ":a:pull", err: true},
		{name: "actions too long", in: "repository:a:" + strings.Repeat("p", 256), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResourceScope(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseResourceScope(%q) = %+v, want an error", tt.in, got)
				}
				checkScopeError(t, err)
				return
			}
			if err != nil {
				t.Fatalf("ParseResourceScope(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseResourceScope(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if again, err := ParseResourceScope(got.String()); err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %q: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func checkScopeError(t *testing.T, err error) {
	t.Helper()
	var e *tollgate.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is %T, want *tollgate.Error", err, err)
	}
	if e.Code != tollgate.EINVALID || e.Field != "scope" {
		t.Fatalf("error code %q field %q, want %q %q", e.Code, e.Field, tollgate.EINVALID, "scope")
	}
}

func TestParseScopes(t *testing.T) {
	pull := func(name string) ResourceScope {
		return ResourceScope{Type: "repository", Name: name, Actions: []string{"pull"}}
	}
	tests := []struct {
		name string
		in   []string
		want []ResourceScope
		err  bool
	}{
		{name: "none", in: nil, want: nil},
		{name: "docker login sends no scope", in: []string{""}, want: nil},
		{name: "only spaces", in: []string{"   ", ""}, want: nil},
		{name: "one", in: []string{"repository:a:pull"}, want: []ResourceScope{pull("a")}},
		{name: "space separated in one value (POST, crane)", in: []string{"repository:a:pull repository:b:pull"},
			want: []ResourceScope{pull("a"), pull("b")}},
		{name: "repeated values (GET, podman, oras)", in: []string{"repository:a:pull", "repository:b:pull"},
			want: []ResourceScope{pull("a"), pull("b")}},
		{name: "extra spaces", in: []string{"  repository:a:pull   repository:b:pull  "},
			want: []ResourceScope{pull("a"), pull("b")}},
		{name: "duplicates merged", in: []string{"repository:a:pull", "repository:a:pull"},
			want: []ResourceScope{pull("a")}},
		{name: "actions unioned in order", in: []string{"repository:a:push repository:b:pull", "repository:a:pull,push,delete"},
			want: []ResourceScope{{Type: "repository", Name: "a", Actions: []string{"push", "pull", "delete"}}, pull("b")}},
		{name: "class ignored when merging", in: []string{"repository(plugin):a:pull repository:a:push"},
			want: []ResourceScope{{Type: "repository", Class: "plugin", Name: "a", Actions: []string{"pull", "push"}}}},
		{name: "types kept apart", in: []string{"repository:catalog:pull registry:catalog:*"},
			want: []ResourceScope{pull("catalog"), {Type: "registry", Name: "catalog", Actions: []string{"*"}}}},
		{name: "host port among others", in: []string{"repository:localhost:5000/a:pull repository:a:pull"},
			want: []ResourceScope{pull("localhost:5000/a"), pull("a")}},
		{name: "64 scopes", in: manyScopes(64), want: func() []ResourceScope {
			var out []ResourceScope
			for i := range 64 {
				out = append(out, pull(scopeName(i)))
			}
			return out
		}()},
		{name: "65 scopes", in: manyScopes(65), err: true},
		{name: "many duplicates", in: func() []string {
			var v []string
			for range 300 {
				v = append(v, "repository:a:pull")
			}
			return v
		}(), err: true},
		{name: "tab separated", in: []string{"repository:a:pull\trepository:b:pull"}, err: true},
		{name: "garbage in second value", in: []string{"repository:a:pull", "garbage"}, err: true},
		{name: "garbage after a good scope", in: []string{"repository:a:pull repository:b"}, err: true},
		{name: "comma separated scopes", in: []string{"repository:a:pull,repository:b:pull"}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResourceScopes(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseResourceScopes = %+v, want an error", got)
				}
				checkScopeError(t, err)
				return
			}
			if err != nil {
				t.Fatalf("ParseResourceScopes: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseResourceScopes = %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func scopeName(i int) string { return "repo" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func manyScopes(n int) []string {
	var parts []string
	for i := range n {
		parts = append(parts, "repository:"+scopeName(i)+":pull")
	}
	return []string{strings.Join(parts, " ")}
}

func TestParseScopeErrorDoesNotEchoMuchInput(t *testing.T) {
	in := "repository:" + strings.Repeat("x", 5000) + "SECRET-TAIL:pull"
	_, err := ParseResourceScope(in)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := tollgate.ErrorMessage(err)
	if strings.Contains(msg, "SECRET-TAIL") || len(msg) > 200 {
		t.Fatalf("message echoes too much (%d bytes): %q", len(msg), msg)
	}
}
