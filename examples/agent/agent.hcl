# Vault Agent / OpenBao Agent: keep the current Qlik key of the `qlik/` mount in a file.
#
#   bao agent -config=agent.hcl        (or: vault agent -config=agent.hcl)
#
# Run it from this directory (the paths below are relative to the working directory), with
# BAO_ADDR / VAULT_ADDR naming the server, or set `vault { address = ... }`. The agent's token
# comes from the file `agent-token` (one line); the engine's `qlik/key` lease is not renewable,
# so the agent re-reads the key when the lease nears its end (at 90-100 % of its TTL, which the
# engine sets to the key's remaining life, capped at the mount's max lease TTL) and rewrites the
# file when the key changed. `tests/e2e_agent.rs` runs this file against a dev server.

# vault {
#   address = "https://vault.example.com:8200"
# }

auto_auth {
  # Any auth method works (approle, kubernetes, ...); a token file keeps the example short.
  method "token_file" {
    config = {
      token_file_path = "agent-token"
    }
  }
}

template_config {
  # Keep running (and retrying) when a read fails, instead of exiting.
  exit_on_retry_failure = false
}

template {
  source      = "qlik-key.ctmpl"
  destination = "qlik-key.env"
  perms       = "0600"
  # e.g. restart or signal the application that reads the key:
  # command   = "systemctl reload my-app"
}
