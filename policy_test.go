package tollgate

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks("networks", []string{"10.1.2.3/16", "192.0.2.7", "2001:db8::1", "::ffff:10.9.0.0/112", "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.1.0.0/16", "10.9.0.0/16", "192.0.2.7/32", "2001:db8::1/128"}
	if !slices.Equal(FormatNetworks(got), want) {
		t.Fatalf("got %v, want %v (masked, mapped addresses unmapped, sorted, deduplicated)", FormatNetworks(got), want)
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "fe80::1%eth0", "", "10.0.0.0/8/8"} {
		_, err := ParseNetworks("networks", []string{"10.0.0.0/8", bad})
		if ErrorField(err) != "networks[1]" {
			t.Errorf("%q: err %v, want a field error on networks[1]", bad, err)
		}
	}
	many := make([]string, MaxPolicyNetworks+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i), 0}).String()
	}
	if _, err := ParseNetworks("networks", many); ErrorField(err) != "networks" {
		t.Errorf("%d networks: %v", len(many), err)
	}
}

func TestTokenPolicyValidateNamesTheField(t *testing.T) {
	for _, tt := range []struct {
		p     TokenPolicy
		field string
	}{
		{TokenPolicy{Images: []string{"ok/*", "Bad"}}, "restrict_images[1]"},
		{TokenPolicy{Packages: []string{"os", "a//b"}}, "restrict_packages[1]"},
		{TokenPolicy{Images: make([]string, MaxPolicyPatterns+1)}, "restrict_images"},
	} {
		err := tt.p.Validate()
		if ErrorField(err) != tt.field || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: %v, want field %s", tt.p, err, tt.field)
		}
	}
	if err := (TokenPolicy{Images: []string{"team-a/**"}, Packages: []string{"os"}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTokenPolicyAddressFailsClosed(t *testing.T) {
	ns, _ := ParseNetworks("networks", []string{"10.0.0.0/8"})
	p := TokenPolicy{Networks: ns}
	if p.AllowsAddress(netip.Addr{}) {
		t.Fatal("an unknown address passed a network rule")
	}
	if !(TokenPolicy{}).AllowsAddress(netip.Addr{}) {
		t.Fatal("no rule refused an unknown address")
	}
}
