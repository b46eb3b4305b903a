# A monitoring system (Prometheus, a health checker): the chain's health and the metrics of
# the qlik/ mount, no key and no setting. Neither path carries a secret.
path "qlik/status" {
  capabilities = ["read"]
}
path "qlik/metrics" {
  capabilities = ["read"]
}
