# Operators of the qlik/ mount: configure the tenant and the stored key, rotate, manage roles,
# see what the mount tracks and how healthy it is, tidy, and end the engine's leases (one lease,
# a role's, or every dedicated key); write OAuth clients and token roles and rotate client
# secrets (their answers carry no secret, and operators read no token or secret lease: those
# are the applications'). Every `bao` command of docs/runbooks.md runs under this policy
# (tests/e2e_policies.rs).
# `rotate` answers with the new key: operators can see keys through it, applications cannot.
path "qlik/config" {
  capabilities = ["create", "read", "update", "delete"]
}
path "qlik/rotate" {
  capabilities = ["update"]
}
# The chain's health and the metrics (no secret in either): the runbooks' first step.
path "qlik/status" {
  capabilities = ["read"]
}
path "qlik/metrics" {
  capabilities = ["read"]
}
path "qlik/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "qlik/keys/*" {
  capabilities = ["read", "list"]
}
path "qlik/oauth/clients/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
# Every path below oauth/clients/ but the secret leases (applications read those).
path "qlik/oauth/clients/+/secret" {
  capabilities = ["deny"]
}
path "qlik/oauth/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "qlik/tidy" {
  capabilities = ["update"]
}
# Which leases of the engine are live: `bao list sys/leases/lookup/qlik/creds/ROLE` (lease ids
# only; listing leases needs sudo). Nothing outside qlik/.
path "sys/leases/lookup/qlik/*" {
  capabilities = ["list", "sudo"]
}
# `bao lease lookup LEASE_ID`: a lease's times (issue, expiry), never its secret. The CLI sends
# the id in the body, so this path cannot be narrowed to qlik/ leases.
path "sys/leases/lookup" {
  capabilities = ["update"]
}
# `bao lease revoke LEASE_ID` of one lease of the engine: a dedicated key (creds, deleted at
# Qlik), the lease of a rotation by hand (rotate), an OAuth client secret's lease.
path "sys/leases/revoke/qlik/creds/*" {
  capabilities = ["update"]
}
path "sys/leases/revoke/qlik/rotate/*" {
  capabilities = ["update"]
}
path "sys/leases/revoke/qlik/oauth/clients/*" {
  capabilities = ["update"]
}
# bao lease revoke -prefix qlik/creds/ROLE (a leak, or the tenant's key limit reached: one
# role's dedicated keys), qlik/creds/ (every dedicated key), or qlik/oauth/clients/NAME/secret
# (a leaked client secret's leases); the CLI drops the trailing slash, so the policy names both
# forms.
path "sys/leases/revoke-prefix/qlik/creds" {
  capabilities = ["update", "sudo"]
}
path "sys/leases/revoke-prefix/qlik/creds/*" {
  capabilities = ["update", "sudo"]
}
path "sys/leases/revoke-prefix/qlik/oauth/clients/+/secret" {
  capabilities = ["update", "sudo"]
}
