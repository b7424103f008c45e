// Package discoveryv1 is the generated code of pvlb's discovery plugin
// protocol, version 1. It is internal: plugins use pkg/pluginapi.
// Regenerate with `go generate ./internal/discoveryv1` (needs protoc).
package discoveryv1

//go:generate go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//go:generate go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
//go:generate sh -c "PATH=$(go env GOPATH)/bin:$PATH protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative discovery.proto"
