package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Message is an event rendered for people: e-mail and chat.
type Message struct {
	Subject string
	Body    string
	Link    string // the token's card in the console
}

// Mail renders p. consoleURL is the console's base URL ("" leaves the
// link out).
func Mail(p *tollgate.Payload, consoleURL string) Message {
	name := p.Token.Name
	var subject, what string
	switch p.Type {
	case tollgate.EventTokenExpiring:
		subject = fmt.Sprintf("Registry token %s expires on %s", name, day(p.Token.ExpiresAt))
		what = fmt.Sprintf("The registry token %q of account %s expires on %s. Extend it, or create a new one and move your systems over before then.",
			name, p.Account, stamp(p.Token.ExpiresAt))
	case tollgate.EventTokenExpired:
		subject = fmt.Sprintf("Registry token %s has expired", name)
		what = fmt.Sprintf("The registry token %q of account %s expired on %s. Pulls with it are refused; extending its expiry makes it work again.",
			name, p.Account, stamp(p.Token.ExpiresAt))
	case tollgate.EventTokenRotated:
		subject = fmt.Sprintf("Registry token %s was rotated", name)
		what = fmt.Sprintf("The registry token %q of account %s has a new secret. The previous one works until %s.",
			name, p.Account, stamp(p.Token.PreviousValidUntil))
	case tollgate.EventPreviousSecretExpired:
		subject = fmt.Sprintf("The previous secret of registry token %s stopped working", name)
		what = fmt.Sprintf("The secret that registry token %q of account %s had before its rotation stopped working on %s.",
			name, p.Account, stamp(p.Token.PreviousValidUntil))
	case tollgate.EventTokenNewNetwork:
		subject = fmt.Sprintf("Registry token %s was used from a new network", name)
		what = fmt.Sprintf("The registry token %q of account %s was used from %s for the first time. If that was not you, pause or revoke it.",
			name, p.Account, p.Network)
	case tollgate.EventTokenCreated:
		subject = fmt.Sprintf("Registry token %s was created", name)
		what = fmt.Sprintf("The registry token %q was created in account %s.", name, p.Account)
	case tollgate.EventTokenRevoked:
		subject = fmt.Sprintf("Registry token %s was revoked", name)
		what = fmt.Sprintf("The registry token %q of account %s was revoked: pulls with it are refused from now on.", name, p.Account)
	case tollgate.EventTokenPaused:
		subject = fmt.Sprintf("Registry token %s was paused", name)
		what = fmt.Sprintf("The registry token %q of account %s was paused: pulls with it are refused until it is resumed.", name, p.Account)
	case tollgate.EventTokenRefused:
		subject = fmt.Sprintf("Registry token %s was refused (%s)", name, p.Reason)
		what = fmt.Sprintf("A request with the registry token %q of account %s from %s was refused: %s. Further refusals within the hour are not reported.",
			name, p.Account, p.Client, p.Reason)
	case tollgate.EventPackagesRequested, tollgate.EventPackagesGranted, tollgate.EventPackagesDenied:
		subject = fmt.Sprintf("Package access of account %s: %s", p.Account, p.PackageAccess)
		what = fmt.Sprintf("Package access of account %s is now %s.", p.Account, p.PackageAccess)
	case tollgate.EventWebhookTest:
		subject = fmt.Sprintf("Test notification for account %s", p.Account)
		what = "This is a test from tollgate: the webhook is reachable and its signature can be checked."
	default:
		subject = fmt.Sprintf("Registry token %s: %s", name, p.Type)
		what = subject + "."
	}
	m := Message{Subject: subject}
	switch {
	case consoleURL == "":
	case p.Token.ID != "":
		m.Link = strings.TrimRight(consoleURL, "/") + "/tokens#" + url.PathEscape(p.Token.ID)
	default:
		m.Link = strings.TrimRight(consoleURL, "/") + "/"
	}
	m.Body = what + "\r\n"
	if m.Link != "" {
		m.Body += "\r\nToken: " + m.Link + "\r\n"
	}
	return m
}

func day(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format("2006-01-02")
}

func stamp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}

// SMTP sends e-mail through one server: STARTTLS (required unless
// Insecure), then AUTH PLAIN if Username is set.
type SMTP struct {
	Addr     string // host:port
	From     string
	Insecure bool // allow a server without STARTTLS (a local relay, tests)
	Username string
	Password tollgate.Secret
	// TLS, if set, replaces the default (server name from Addr).
	TLS *tls.Config
}

// Send delivers m to one recipient. It returns the SMTP reply code of a
// refusal as the code.
func (s *SMTP) Send(ctx context.Context, to string, m Message) (int, error) {
	if strings.ContainsAny(to, "\r\n") || strings.ContainsAny(m.Subject, "\r\n") {
		return 0, fmt.Errorf("%w: header injection refused", errPermanent)
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return 0, fmt.Errorf("%w: bad SMTP address", errPermanent)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", s.Addr)
	if err != nil {
		return 0, err
	}
	if dl, ok := dctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return smtpCode(err), err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return smtpCode(err), err
		}
	} else if !s.Insecure {
		return 0, errors.New("the SMTP server does not offer STARTTLS")
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password.Reveal(), host)); err != nil { // to the mail server only
			return smtpCode(err), errors.New("SMTP authentication failed")
		}
	}
	if err := c.Mail(s.From); err != nil {
		return smtpCode(err), err
	}
	if err := c.Rcpt(to); err != nil {
		return smtpCode(err), err
	}
	w, err := c.Data()
	if err != nil {
		return smtpCode(err), err
	}
	msg := "From: " + s.From + "\r\n" +
		"To: " + to + "\r\n" +
		"Subject: " + m.Subject + "\r\n" +
		"Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + m.Body
	if _, err := w.Write([]byte(msg)); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return smtpCode(err), err
	}
	c.Quit()
	return 250, nil
}

func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
