module storefront/tools/monitoring-crds

go 1.24.0

// Not built: the module is fetched (and checked against go.sum) for its generated CRDs,
// example/prometheus-operator-crd/.
require github.com/prometheus-operator/prometheus-operator v0.85.0
