//go:build tools

// The kube-apiserver pvlb's Kubernetes tests run against; main.go calls it.
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
