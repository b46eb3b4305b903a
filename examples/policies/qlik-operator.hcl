# Operators of the qlik/ mount: configure the tenant and the stored key, rotate, manage roles,
# see what the mount tracks, tidy, and end every dedicated key at once; write OAuth clients and
# token roles and rotate client secrets (their answers carry no secret, and operators read no
# token or secret lease: those are the applications').
# `rotate` answers with the new key: operators can see keys through it, applications cannot.
path "qlik/config" {
  capabilities = ["create", "read", "update", "delete"]
}
path "qlik/rotate" {
  capabilities = ["update"]
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
# bao lease revoke -prefix qlik/creds/ (a leak, or the tenant's key limit reached); the CLI
# drops the trailing slash, so the policy names both forms.
path "sys/leases/revoke-prefix/qlik/creds" {
  capabilities = ["update", "sudo"]
}
path "sys/leases/revoke-prefix/qlik/creds/*" {
  capabilities = ["update", "sudo"]
}
