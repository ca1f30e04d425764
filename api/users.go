package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/tollgate/tollgate"
)

// Console users: the operator adds people to an account and hands them a
// one-time set-password link; they then sign in to the web console.

// User is the wire form of a console user. The password hash and the
// link's hash never leave the server.
type User struct {
	ID          string    `json:"id"`
	Account     string    `json:"account"`
	Email       string    `json:"email"`
	Role        string    `json:"role"` // admin, operator, viewer
	PasswordSet bool      `json:"password_set"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// CreateUserRequest is the body of POST /api/v1/accounts/{name}/users.
type CreateUserRequest struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

// PasswordLinkRequest is the body of POST /api/v1/users/password-link.
type PasswordLinkRequest struct {
	Email string `json:"email"`
}

// UserLink answers the creation of a user or a new link: SetPasswordURL
// is the one-time link to hand to the person; it is shown only here.
type UserLink struct {
	User           User   `json:"user"`
	SetPasswordURL string `json:"set_password_url"`
}

// UserList is an account's console users, by email.
type UserList struct {
	Users []User `json:"users"`
}

func fromUser(u *tollgate.User) User {
	return User{ID: u.ID, Account: u.AccountName, Email: u.Email, Role: string(u.Role), PasswordSet: u.PasswordHash != "",
		CreatedAt: wireTime(u.CreatedAt), UpdatedAt: wireTime(u.UpdatedAt)}
}

// userRoutes are the console-user endpoints, all for the operator.
func (s *Server) userRoutes() []route {
	const p = "/api/v1"
	return []route{
		{"POST", p + "/accounts/{name}/users", true, s.createUser},
		{"GET", p + "/accounts/{name}/users", true, s.listUsers},
		{"POST", p + "/users/password-link", true, s.passwordLink},
	}
}

// users needs no password hasher: the API creates users and links, it
// never sees a password.
func (s *Server) users() *tollgate.Users {
	return &tollgate.Users{Store: s.Service.Store, Keys: s.Service.Keys, Now: s.now}
}

func (s *Server) createUser(r *http.Request, who *actor) (int, any, error) {
	var in CreateUserRequest
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	u, link, err := s.users().CreateUser(r.Context(), who.name, tollgate.UserCreate{
		Account: r.PathValue("name"), Email: in.Email, Role: tollgate.Role(in.Role)})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, UserLink{User: fromUser(u), SetPasswordURL: tollgate.SetPasswordURL(s.PublicURL, link)}, nil
}

func (s *Server) listUsers(r *http.Request, _ *actor) (int, any, error) {
	us, err := s.users().ListUsers(r.Context(), r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	out := UserList{Users: make([]User, 0, len(us))}
	for _, u := range us {
		out.Users = append(out.Users, fromUser(u))
	}
	return http.StatusOK, out, nil
}

func (s *Server) passwordLink(r *http.Request, who *actor) (int, any, error) {
	var in PasswordLinkRequest
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	u, link, err := s.users().IssuePasswordLink(r.Context(), who.name, in.Email)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, UserLink{User: fromUser(u), SetPasswordURL: tollgate.SetPasswordURL(s.PublicURL, link)}, nil
}

// CreateUser adds a console user to an account (operator only). The
// answer's SetPasswordURL is the one-time link to hand to the person.
func (c *Client) CreateUser(ctx context.Context, account string, in CreateUserRequest) (*UserLink, error) {
	var out UserLink
	if err := c.do(ctx, "POST", "accounts/"+url.PathEscape(account)+"/users", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUsers returns an account's console users (operator only).
func (c *Client) ListUsers(ctx context.Context, account string) ([]User, error) {
	var out UserList
	return out.Users, c.do(ctx, "GET", "accounts/"+url.PathEscape(account)+"/users", nil, nil, &out)
}

// PasswordLink replaces a user's set-password link (operator only).
func (c *Client) PasswordLink(ctx context.Context, email string) (*UserLink, error) {
	var out UserLink
	if err := c.do(ctx, "POST", "users/password-link", nil, PasswordLinkRequest{Email: email}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
