package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/api"
)

// `tollgate webhook ...`: an account's webhooks and their delivery log.

func newWebhookCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Manage an account's webhooks and see their deliveries"}
	f.register(cmd)
	cmd.AddCommand(newWebhookAddCmd(f), newWebhookListCmd(f), newWebhookDeleteCmd(f), newWebhookTestCmd(f),
		newWebhookDeliveriesCmd(f), newWebhookRedeliverCmd(f))
	return cmd
}

// accountFlag adds the required --account flag; check returns its value
// or the error naming it.
func accountFlag(cmd *cobra.Command) func() (string, error) {
	var account string
	cmd.Flags().StringVar(&account, "account", "", "account name (required)")
	return func() (string, error) {
		if account == "" {
			return "", tollgate.FieldError("account", "required (--account)")
		}
		return account, nil
	}
}

func newWebhookAddCmd(f *clientFlags) *cobra.Command {
	var format string
	var events []string
	cmd := &cobra.Command{
		Use:   "add RECEIVER-URL --account NAME [--events token.expiring,token.rotated] [--format json|slack]",
		Short: "Add a webhook; prints its signing secret once",
		Args:  cobra.ExactArgs(1),
	}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		url := args[0]
		if err := tollgate.ValidateWebhookURL(url); err != nil {
			return err
		}
		out, err := cl.CreateWebhook(c.Context(), name, api.CreateWebhookRequest{URL: url, Events: events, Format: format})
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), out)
		}
		if err := printWebhooks(c, []api.Webhook{out.Webhook}); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "\nsigning secret (shown once; verify Tollgate-Signature with it, see docs/webhooks.md):\n%s\n", out.Secret)
		return nil
	})
	cmd.Flags().StringSliceVar(&events, "events", nil, "event types to send (comma-separated; default: all): "+strings.Join(tollgate.EventTypes, ", "))
	cmd.Flags().StringVar(&format, "format", "json", "json (the versioned event) or slack (a plain {\"text\": ...} for chat channels)")
	return cmd
}

func newWebhookListCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "list --account NAME", Short: "List an account's webhooks", Args: cobra.NoArgs}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		out, err := cl.ListWebhooks(c.Context(), name)
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), out)
		}
		return printWebhooks(c, out.Webhooks)
	})
	return cmd
}

func newWebhookDeleteCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "delete ID --account NAME", Short: "Remove a webhook (its delivery log stays)", Args: cobra.ExactArgs(1)}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		if err := cl.DeleteWebhook(c.Context(), name, args[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "webhook %s deleted\n", args[0])
		return nil
	})
	return cmd
}

func newWebhookTestCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "test ID --account NAME", Short: "Send a webhook.test event to one webhook", Args: cobra.ExactArgs(1)}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		d, err := cl.TestWebhook(c.Context(), name, args[0])
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), d)
		}
		fmt.Fprintf(c.OutOrStdout(), "test event queued as delivery %d; see its outcome with:\ntollgate webhook deliveries --account %s\n", d.ID, name)
		return nil
	})
	return cmd
}

func newWebhookDeliveriesCmd(f *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{Use: "deliveries --account NAME [--limit 50]", Short: "The delivery log: status, response code, attempts, next attempt", Args: cobra.NoArgs}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, _ []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		if limit < 1 || limit > 200 {
			return tollgate.FieldError("limit", "must be from 1 to 200")
		}
		out, err := cl.ListDeliveries(c.Context(), name, limit)
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.printJSON(c.OutOrStdout(), out)
		}
		rows := make([][]string, 0, len(out.Deliveries))
		for _, d := range out.Deliveries {
			code := "-"
			if d.LastCode != 0 {
				code = strconv.Itoa(d.LastCode)
			}
			to := d.Target
			if d.URL != "" {
				to = d.URL
			}
			rows = append(rows, []string{strconv.FormatInt(d.ID, 10), d.Event, orDash(d.Token), d.Channel + " " + to, d.Status, code,
				strconv.Itoa(d.Attempts), fmtTime(d.NextAttemptAt), fmtTime(&d.CreatedAt), orDash(d.LastError)})
		}
		return table(c.OutOrStdout(), "ID\tEVENT\tTOKEN\tTO\tSTATUS\tCODE\tATTEMPTS\tNEXT ATTEMPT\tCREATED\tLAST ERROR", rows)
	})
	cmd.Flags().IntVar(&limit, "limit", 50, "how many, newest first (at most 200)")
	return cmd
}

func newWebhookRedeliverCmd(f *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "redeliver DELIVERY-ID --account NAME", Short: "Send a delivery again (same idempotency key)", Args: cobra.ExactArgs(1)}
	account := accountFlag(cmd)
	cmd.RunE = f.run(func(c *cobra.Command, args []string, cl *api.Client) error {
		name, err := account()
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return tollgate.FieldError("delivery", "must be a delivery id (a number, see `tollgate webhook deliveries`)")
		}
		if err := cl.Redeliver(c.Context(), name, id); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "delivery %d queued again\n", id)
		return nil
	})
	return cmd
}

func printWebhooks(c *cobra.Command, ws []api.Webhook) error {
	rows := make([][]string, 0, len(ws))
	for _, w := range ws {
		events := "all"
		if len(w.Events) > 0 {
			events = strings.Join(w.Events, ",")
		}
		rows = append(rows, []string{w.ID, w.URL, events, w.Format, w.ManagedBy, w.CreatedAt.UTC().Format(time.RFC3339)})
	}
	return table(c.OutOrStdout(), "ID\tURL\tEVENTS\tFORMAT\tMANAGED BY\tCREATED", rows)
}
