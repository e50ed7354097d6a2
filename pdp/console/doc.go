// Package console is the web review console for the humans in the loop:
// step-up approvals and audit review in a browser.
//
// It reads the decision log read-only ([decisionlog.Reader]) and acts only
// through the daemon's admin socket ([client.Client]): an approval made in
// the console is recorded by the daemon exactly as one made with curl, with
// the signed-in account as its approver. Sign-in is by an accounts file of
// argon2id (or bcrypt) hashes ([AddUser]) or a one-time link printed at
// start ([Server.SignInLink]); sessions live in HttpOnly, SameSite=Strict
// cookies, every form carries a CSRF token bound to the session, and every
// page is served with a Content-Security-Policy that allows nothing from
// elsewhere and no inline script. Pages are html/template; the only script
// (static/app.js) brings waiting step-ups in live over server-sent events
// and counts down their time.
package console
