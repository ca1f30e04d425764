package usage

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// CSVHeader is the header of the usage CSV: one row per day × token ×
// repository, the form the console's download and `tollgate usage -o
// csv` share.
var CSVHeader = []string{"day", "token", "kind", "repository", "pulls", "manifests", "bytes", "addresses"}

// WriteCSV writes days as CSV, header first.
func WriteCSV(w io.Writer, days []tollgate.UsageDay) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	for _, d := range days {
		cw.Write([]string{d.Day.Format(time.DateOnly), d.TokenID, d.Kind, csvSafe(d.Repository),
			strconv.FormatInt(d.Pulls, 10), strconv.FormatInt(d.Manifests, 10), strconv.FormatInt(d.Bytes, 10), strconv.FormatInt(d.Addresses, 10)})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
// Repository names never start with these; the guard is for the future.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}

// ReadCSV reads what WriteCSV wrote.
func ReadCSV(r io.Reader) ([]tollgate.UsageDay, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(CSVHeader)
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || fmt.Sprint(recs[0]) != fmt.Sprint(CSVHeader) {
		return nil, fmt.Errorf("usage csv: header must be %v", CSVHeader)
	}
	var out []tollgate.UsageDay
	for i, rec := range recs[1:] {
		day, err := time.Parse(time.DateOnly, rec[0])
		if err != nil {
			return nil, fmt.Errorf("usage csv: row %d: %w", i+2, err)
		}
		d := tollgate.UsageDay{UsageKey: tollgate.UsageKey{Day: day, TokenID: rec[1], Kind: rec[2], Repository: rec[3]}}
		for j, p := range []*int64{&d.Pulls, &d.Manifests, &d.Bytes, &d.Addresses} {
			if *p, err = strconv.ParseInt(rec[4+j], 10, 64); err != nil {
				return nil, fmt.Errorf("usage csv: row %d, %s: %w", i+2, CSVHeader[4+j], err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// HumanBytes prints n in binary units (1.5 MiB), for the CLI and the
// console.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
