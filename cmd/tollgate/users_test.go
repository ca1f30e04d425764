package main

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testenv"
)

func TestUserAddPrintsSetPasswordLink(t *testing.T) {
	d := startDev(t, t.TempDir(), &testenv.Buffer{})
	if !strings.HasPrefix(d.Env["TOLLGATE_CONSOLE_SET_PASSWORD_URL"], d.Env["TOLLGATE_URL"]+"/console/set-password?t=tgp_") ||
		d.Env["TOLLGATE_CONSOLE_EMAIL"] != demoConsoleEmail || d.Env["TOLLGATE_CONSOLE_URL"] != d.Env["TOLLGATE_URL"]+"/console/" {
		t.Fatalf("dev.env console settings: %v", d.Env)
	}
	c := &cli{t: t, env: map[string]string{"TOLLGATE_URL": d.Env["TOLLGATE_URL"], "TOLLGATE_ADMIN_KEY": d.Env["TOLLGATE_ADMIN_KEY"]}}

	out := c.ok("user", "add", "--account", "demo", "--email", "ann@demo.example", "--role", "operator")
	if !strings.Contains(out, "ann@demo.example") || !strings.Contains(out, d.Env["TOLLGATE_URL"]+"/console/set-password?t=tgp_") {
		t.Fatalf("user add printed:\n%s", out)
	}
	if errs := c.fail("user", "add", "--account", "demo", "--email", "ann@demo.example", "--role", "viewer"); !strings.Contains(errs, "email: a console user with this email already exists") {
		t.Fatalf("duplicate: %s", errs)
	}
	if errs := c.fail("user", "add", "--account", "demo", "--email", "bob@demo.example", "--role", "root"); !strings.Contains(errs, "role: must be one of admin, operator, viewer") {
		t.Fatalf("bad role: %s", errs)
	}
	if out := c.ok("user", "list", "--account", "demo"); !strings.Contains(out, "ann@demo.example") || !strings.Contains(out, "not set") {
		t.Fatalf("user list:\n%s", out)
	}
	if out := c.ok("user", "reset-link", "--email", "ann@demo.example"); !strings.Contains(out, "/console/set-password?t=tgp_") {
		t.Fatalf("reset-link:\n%s", out)
	}
}
