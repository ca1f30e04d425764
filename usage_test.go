package tollgate

import (
	"testing"
	"time"
)

func TestParsePeriodStart(t *testing.T) {
	now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"", "2026-02-09"}, {"30d", "2026-02-09"}, {"1d", "2026-03-10"}, {"2026-01-02", "2026-01-02"},
		{"0d", ""}, {"-3d", ""}, {"3x", ""}, {"401d", ""}, {"d", ""}, {"+3d", ""}, {"2026-13-01", ""},
	} {
		got, err := ParsePeriodStart(tc.in, now)
		if tc.want == "" {
			if ErrorCode(err) != EINVALID || ErrorField(err) != "since" {
				t.Errorf("%q: %v, %v; want EINVALID since", tc.in, got, err)
			}
			continue
		}
		if err != nil || got.Format(time.DateOnly) != tc.want {
			t.Errorf("%q = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestNetworkOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77": "192.0.2.0/24", "::ffff:192.0.2.1": "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64", "nope": "", "": "",
	} {
		if got := NetworkOf(in); got != want {
			t.Errorf("NetworkOf(%q) = %q, want %q", in, got, want)
		}
	}
}
