# An application (or its Vault Agent) that uses the mount's stored key.
path "qlik/key" {
  capabilities = ["read"]
}
