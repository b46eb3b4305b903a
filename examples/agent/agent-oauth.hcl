# Vault Agent / OpenBao Agent: keep a Qlik OAuth access token of the role `reporting` (the
# `qlik/` mount's oauth/token/reporting) in a file.
#
#   bao agent -config=agent-oauth.hcl        (or: vault agent -config=agent-oauth.hcl)
#
# Run it from this directory, as agent.hcl. A token lease is renewable up to the token's life:
# the agent renews it at once and again at about 2/3 of its TTL; that renewal cannot extend it,
# so the agent reads a new token then (at 70-73 % of the token's life when the role sets no
# `ttl`) and rewrites the file. The old token stays valid until it expires.
# `tests/e2e_agent.rs` runs this file against a dev server.

auto_auth {
  method "token_file" {
    config = {
      token_file_path = "agent-token"
    }
  }
}

template_config {
  exit_on_retry_failure = false
}

template {
  source      = "qlik-oauth-token.ctmpl"
  destination = "qlik-oauth-token.env"
  perms       = "0600"
  # command   = "systemctl reload my-app"
}
