// Package peervaultv1 holds the generated Go code for PeerVault's gRPC
// service. It is committed, so building pvlb needs no protoc; regenerate
// with `go generate ./proto/...`, which needs protoc (Debian:
// protobuf-compiler) and installs the pinned Go generators.
package peervaultv1

//go:generate go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//go:generate go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
//go:generate sh -c "PATH=$(go env GOPATH)/bin:$PATH protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative peervault.proto"
