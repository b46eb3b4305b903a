# An application (or its Vault Agent) that gets Qlik access tokens of the OAuth role
# `reporting` (a token per lease, revoked at Qlik when the lease ends). One policy per role;
# renewing its leases needs nothing more (the default policy allows sys/leases/renew).
path "qlik/oauth/token/reporting" {
  capabilities = ["read"]
}
