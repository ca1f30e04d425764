package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// `tollgate audit ...`: the audit log of token and account lifecycle
// events.

func newAuditCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit log"}
	f.register(cmd)
	cmd.AddCommand(newAuditListCmd(f))
	return cmd
}

func newAuditListCmd(f *clientFlags) *cobra.Command {
	var account string
	var before int64
	var limit int
	cmd := &cobra.Command{
		Use: "list --account NAME", Short: "List an account's lifecycle events, newest first", Args: cobra.NoArgs,
		RunE: f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
			if account == "" {
				return tollgate.FieldError("account", "required (--account)")
			}
			page, err := cl.ListAudit(c.Context(), account, before, limit)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.printJSON(c.OutOrStdout(), page)
			}
			rows := make([][]string, 0, len(page.Events))
			for _, e := range page.Events {
				rows = append(rows, []string{fmt.Sprint(e.ID), e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, formatChanges(e.Changes)})
			}
			if err := table(c.OutOrStdout(), "ID\tTIME\tACTOR\tACTION\tTARGET\tCHANGES", rows); err != nil {
				return err
			}
			if page.NextBefore != nil {
				fmt.Fprintf(c.OutOrStdout(), "\nmore: --before %d\n", *page.NextBefore)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	cmd.Flags().Int64Var(&before, "before", 0, "only events older than this event id (paging)")
	cmd.Flags().IntVar(&limit, "limit", 50, "events per page (at most 500)")
	return cmd
}

func formatChanges(ch map[string]api.Change) string {
	if len(ch) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(ch))
	for k := range ch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		c := ch[k]
		if c.From == "" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, c.To))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %q→%q", k, c.From, c.To))
		}
	}
	return strings.Join(parts, " ")
}
