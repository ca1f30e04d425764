// Command oidc-issuer runs the test OIDC issuer (package oidcissuer) for
// scripts: it writes the issuer URL to --out and serves discovery, JWKS
// and GET /dev/sign?repository=OWNER/REPO&aud=AUD (a GitHub Actions job's
// token) on a loopback port until it is killed. Development and tests
// only: anyone who can reach it can mint tokens.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate/tollgate/internal/dev/oidcissuer"
)

func main() {
	out := flag.String("out", "", "write the issuer URL to this file (default: standard output)")
	flag.Parse()
	is, err := oidcissuer.StartSigning()
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-issuer:", err)
		os.Exit(1)
	}
	defer is.Close()
	if *out == "" {
		fmt.Println(is.URL)
	} else if err := os.WriteFile(*out, []byte(is.URL+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "oidc-issuer:", err)
		os.Exit(1)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
