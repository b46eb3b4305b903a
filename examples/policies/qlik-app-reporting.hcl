# An application that gets its own key per lease from the role `reporting`
# (deleted at Qlik when the lease ends). One policy per role.
path "qlik/creds/reporting" {
  capabilities = ["read"]
}
