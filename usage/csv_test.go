package usage_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/usage"
)

func TestCSVRoundTrips(t *testing.T) {
	in := []tollgate.UsageDay{
		{UsageKey: tollgate.UsageKey{Day: t0.Truncate(24 * 60 * 60 * 1e9), TokenID: "tok_a", Kind: tollgate.UsageImage, Repository: "demo/hello"}, Pulls: 3, Manifests: 5, Bytes: 1 << 40, Addresses: 2},
		{UsageKey: tollgate.UsageKey{Day: tollgate.Day(t0), Kind: tollgate.UsagePackage, Repository: "apk/os,\"quoted\""}, Pulls: 1, Bytes: 7},
	}
	in[0].Day = tollgate.Day(t0)
	var buf bytes.Buffer
	if err := usage.WriteCSV(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := usage.ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}
