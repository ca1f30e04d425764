// Package deploy holds no code: it is how tollgate is shipped and run.
// Dockerfile builds the image, kubernetes/base is the kustomize base for
// a cluster, compose.yaml runs the production shape on one machine and
// grafana/tollgate.json is the dashboard over the metrics. The tests in
// this directory check those files against the Kubernetes API types, the
// configuration schema (package config) and each other; see
// docs/operations.md.
package deploy
