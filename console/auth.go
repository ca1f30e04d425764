package console

import (
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/obs"
)

// ipFactor: an address may fail this many times the per-email limit (an
// office behind one address has several people).
const ipFactor = 4

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Sign in", CSRF: c.preSessionCSRF(w, r), Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("signed-out") != "" {
		v.Flash = "You are signed out."
	}
	if r.URL.Query().Get("password-set") != "" {
		v.Flash = "Your password is set. Sign in with it."
	}
	c.render(w, r, http.StatusOK, "signin", v)
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	email := strings.TrimSpace(r.PostFormValue("email"))
	v := &view{Title: "Sign in", Form: map[string]string{"email": email}, Next: safeNext(r.PostFormValue("next"))}
	if !c.preSessionOK(r) {
		v.CSRF = c.preSessionCSRF(w, r)
		v.Error = "This form has expired. Try again."
		c.render(w, r, http.StatusForbidden, "signin", v)
		return
	}
	v.CSRF = c.preSessionCSRF(w, r)
	// No valid email is longer than 254 characters: a longer one must not
	// keep a long key in the limiter.
	ctx := r.Context()
	ipKey, emailKey := "console-ip:"+clientIP(r), "console-email:"+strings.ToLower(email[:min(len(email), 254)])
	// The attempt counts as a failure before the password is checked, so
	// that a burst of concurrent attempts cannot all pass the limit while
	// the first ones are still being checked; it is given back if it was
	// not a wrong password.
	if blocked, wait := c.IPLimiter.Take(ctx, ipKey); blocked {
		c.tooMany(w, r, v, wait.Minutes())
		return
	}
	if blocked, wait := c.EmailLimiter.Take(ctx, emailKey); blocked {
		c.IPLimiter.Refund(ctx, ipKey)
		c.tooMany(w, r, v, wait.Minutes())
		return
	}
	u, secret, err := c.Users.SignIn(ctx, email, r.PostFormValue("password"))
	if err != nil {
		status := statusOf(err)
		if tollgate.ErrorCode(err) == tollgate.EUNAUTHORIZED {
			status = http.StatusOK // the form again, with the message
			obs.FromContext(ctx).Reason = "bad_credentials"
		} else {
			c.IPLimiter.Refund(ctx, ipKey)
			c.EmailLimiter.Refund(ctx, emailKey)
		}
		v.Error = c.errText(r, err)
		c.render(w, r, status, "signin", v)
		return
	}
	obs.FromContext(ctx).Actor = "user:" + u.ID
	c.IPLimiter.Refund(ctx, ipKey)
	c.EmailLimiter.Reset(ctx, emailKey)
	life := c.Users.SessionLifetime
	if life <= 0 {
		life = tollgate.DefaultSessionLifetime
	}
	c.setCookie(w, sessionCookie, secret.Reveal(), life)
	c.clearCookie(w, preCookie)
	http.Redirect(w, r, v.Next, http.StatusSeeOther)
}

func (c *Console) tooMany(w http.ResponseWriter, r *http.Request, v *view, minutes float64) {
	n := int(math.Ceil(minutes))
	if n < 1 {
		n = 1
	}
	unit := "minutes"
	if n == 1 {
		unit = "minute"
	}
	obs.FromContext(r.Context()).Reason = "rate_limited"
	v.Error = fmt.Sprintf("Too many failed sign-ins. Wait %d %s and try again.", n, unit)
	w.Header().Set("Retry-After", fmt.Sprint(n*60))
	c.render(w, r, http.StatusTooManyRequests, "signin", v)
}

// signOut ends the session. It checks the session's CSRF token so that
// another site cannot sign the user out, but an ended session just goes
// to the sign-in page.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	// Anyone can post here with any cookie: cap what the CSRF check reads.
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(sessionCookie)
	if err == nil {
		if !c.csrfOK(r, c.csrfToken("session", ck.Value)) {
			c.errorPage(w, r, nil, http.StatusForbidden, "This form has expired. Go back, reload the page and try again.")
			return
		}
		if err := c.Users.SignOut(r.Context(), ck.Value); err != nil {
			c.errorPage(w, r, nil, statusOf(err), c.errText(r, err))
			return
		}
	}
	c.clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/console/sign-in?signed-out=1", http.StatusSeeOther)
}

func (c *Console) setPasswordPage(w http.ResponseWriter, r *http.Request) {
	link := r.URL.Query().Get("t")
	v := &view{Title: "Choose your password", CSRF: c.preSessionCSRF(w, r), Link: link}
	u, err := c.Users.PasswordLinkUser(r.Context(), link)
	if err != nil {
		v.Error = c.errText(r, err)
		v.LinkBad = true
		c.render(w, r, statusOf(err), "setpassword", v)
		return
	}
	v.Form = map[string]string{"email": u.Email}
	c.render(w, r, http.StatusOK, "setpassword", v)
}

func (c *Console) setPassword(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	link := r.PostFormValue("t")
	v := &view{Title: "Choose your password", Link: link, Errors: map[string]string{}}
	ok := c.preSessionOK(r)
	v.CSRF = c.preSessionCSRF(w, r)
	if !ok {
		v.Error = "This form has expired. Try again."
		c.render(w, r, http.StatusForbidden, "setpassword", v)
		return
	}
	u, err := c.Users.PasswordLinkUser(r.Context(), link)
	if err != nil {
		v.Error, v.LinkBad = c.errText(r, err), true
		c.render(w, r, statusOf(err), "setpassword", v)
		return
	}
	v.Form = map[string]string{"email": u.Email}
	pw := r.PostFormValue("password")
	if pw != r.PostFormValue("confirm") {
		v.Errors["confirm"] = "The two passwords differ."
		c.render(w, r, http.StatusBadRequest, "setpassword", v)
		return
	}
	if _, err := c.Users.SetPassword(r.Context(), link, pw); err != nil {
		if f := tollgate.ErrorField(err); f != "" {
			v.Errors[f] = c.errText(r, err)
		} else {
			v.Error = c.errText(r, err)
		}
		c.render(w, r, statusOf(err), "setpassword", v)
		return
	}
	http.Redirect(w, r, "/console/sign-in?password-set=1", http.StatusSeeOther)
}
