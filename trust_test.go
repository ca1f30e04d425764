package tollgate

import "testing"

// TestClaimRulesMatchOnlyWhatTheySay: exact rules are exact, globs cross
// "/" but stay anchored, nested Kubernetes claims are reached by path,
// and objects, lists or absent claims never match.
func TestClaimRulesMatchOnlyWhatTheySay(t *testing.T) {
	claims := map[string]any{
		"sub": "system:serviceaccount:builds:puller", "repository": "acme/app", "ref": "refs/heads/release/1.2",
		"run_number": float64(42), "ref_protected": true,
		"kubernetes.io": map[string]any{"namespace": "builds", "serviceaccount": map[string]any{"name": "puller"}},
		"groups":        []any{"a"},
	}
	for _, tc := range []struct {
		rule ClaimRule
		want bool
	}{
		{ClaimRule{Claim: "repository", Value: "acme/app"}, true},
		{ClaimRule{Claim: "repository", Value: "acme/ap"}, false},
		{ClaimRule{Claim: "repository", Value: "acme/*"}, false}, // exact: no wildcards
		{ClaimRule{Claim: "repository", Value: "acme/*", Glob: true}, true},
		{ClaimRule{Claim: "repository", Value: "*/app/x", Glob: true}, false},
		{ClaimRule{Claim: "ref", Value: "refs/heads/*", Glob: true}, true},
		{ClaimRule{Claim: "ref", Value: "refs/heads/release/?.?", Glob: true}, true},
		{ClaimRule{Claim: "ref", Value: "heads/*", Glob: true}, false}, // anchored
		{ClaimRule{Claim: "run_number", Value: "42"}, true},
		{ClaimRule{Claim: "ref_protected", Value: "true"}, true},
		{ClaimRule{Claim: "kubernetes.io/namespace", Value: "builds"}, true},
		{ClaimRule{Claim: "kubernetes.io/serviceaccount/name", Value: "puller"}, true},
		{ClaimRule{Claim: "kubernetes.io/serviceaccount", Value: "*", Glob: true}, false}, // an object
		{ClaimRule{Claim: "groups", Value: "*", Glob: true}, false},
		{ClaimRule{Claim: "environment", Value: "", Glob: false}, false}, // absent is not ""
	} {
		p := TrustPolicy{Rules: []ClaimRule{tc.rule}}
		if _, got := p.Match(claims); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.rule, got, tc.want)
		}
	}
	if _, ok := (&TrustPolicy{}).Match(claims); ok {
		t.Error("a policy without rules matched")
	}
}
