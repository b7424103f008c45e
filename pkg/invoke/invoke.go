// Package invoke calls gRPC methods by name with JSON requests and
// responses, resolving their types by server reflection or from .proto
// files: what `pvlb invoke` runs on.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// ErrNotFound is wrapped by errors for unknown services and methods.
var ErrNotFound = errors.New("not found")

// Resolver finds service descriptors.
type Resolver interface {
	// Service returns the named service's descriptor.
	Service(name string) (protoreflect.ServiceDescriptor, error)
	// Services lists the services that can be resolved.
	Services() ([]string, error)
}

// ParseMethod splits "/package.Service/Method" (the slash optional, or
// "package.Service.Method") into service and method names.
func ParseMethod(full string) (service, method string, err error) {
	s := strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(s, '/'); i > 0 {
		service, method = s[:i], s[i+1:]
	} else if i := strings.LastIndexByte(s, '.'); i > 0 {
		service, method = s[:i], s[i+1:]
	}
	if service == "" || method == "" || strings.ContainsAny(service+method, "/ ") {
		return "", "", fmt.Errorf("%q is not a method name; write /package.Service/Method, like /peervault.PeerVaultService/HealthCheck", full)
	}
	return service, method, nil
}

// FindMethod resolves a full method name, listing what exists when the
// service or method does not.
func FindMethod(r Resolver, full string) (protoreflect.MethodDescriptor, error) {
	svcName, methodName, err := ParseMethod(full)
	if err != nil {
		return nil, err
	}
	sd, err := r.Service(svcName)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		known, lerr := r.Services()
		if lerr != nil || len(known) == 0 {
			return nil, fmt.Errorf("service %s: %w", svcName, ErrNotFound)
		}
		return nil, fmt.Errorf("service %s: %w; services offered: %s", svcName, ErrNotFound, strings.Join(known, ", "))
	}
	md := sd.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		var names []string
		for i := range sd.Methods().Len() {
			names = append(names, string(sd.Methods().Get(i).Name()))
		}
		return nil, fmt.Errorf("service %s has no method %s (%w); its methods: %s", svcName, methodName, ErrNotFound, strings.Join(names, ", "))
	}
	return md, nil
}

// reflectionResolver asks the server, over grpc.reflection v1 with a
// fallback to v1alpha.
type reflectionResolver struct{ client *grpcreflect.Client }

// NewReflectionResolver resolves through server reflection over cc. Close
// ends its stream.
func NewReflectionResolver(ctx context.Context, cc grpc.ClientConnInterface) *ReflectionResolver {
	return &ReflectionResolver{reflectionResolver{client: grpcreflect.NewClientAuto(ctx, cc)}}
}

// ReflectionResolver is a Resolver backed by server reflection.
type ReflectionResolver struct{ reflectionResolver }

// Close ends the reflection stream.
func (r *ReflectionResolver) Close() { r.client.Reset() }

func (r *reflectionResolver) Service(name string) (protoreflect.ServiceDescriptor, error) {
	fd, err := r.client.FileContainingSymbol(protoreflect.FullName(name))
	if err != nil {
		if grpcreflect.IsElementNotFoundError(err) {
			return nil, fmt.Errorf("service %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("server reflection: %w", err)
	}
	sd := fd.Services().ByName(protoreflect.FullName(name).Name())
	if sd == nil || sd.FullName() != protoreflect.FullName(name) {
		return nil, fmt.Errorf("service %s: %w (the name is not a service)", name, ErrNotFound)
	}
	return sd, nil
}

func (r *reflectionResolver) Services() ([]string, error) {
	names, err := r.client.ListServices()
	if err != nil {
		return nil, fmt.Errorf("server reflection: %w", err)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, string(n))
	}
	slices.Sort(out)
	return out, nil
}

// fileResolver resolves from compiled .proto files.
type fileResolver struct{ files *protoregistry.Files }

// NewProtoFileResolver compiles .proto files, finding imports in
// importPaths (and the well-known types), without protoc.
func NewProtoFileResolver(ctx context.Context, files, importPaths []string) (Resolver, error) {
	names, paths, err := importNames(files, importPaths)
	if err != nil {
		return nil, fmt.Errorf("--proto: %w", err)
	}
	comp := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: paths}),
	}
	compiled, err := comp.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("--proto: %w", err)
	}
	reg := &protoregistry.Files{}
	for _, f := range compiled {
		if err := reg.RegisterFile(f); err != nil {
			return nil, fmt.Errorf("--proto: %w", err)
		}
	}
	return &fileResolver{files: reg}, nil
}

// importNames names each file as its imports would: relative to the import
// path that holds it, or to its own directory, which then joins the paths.
// A file that is not where it is named from the working directory is
// looked for under the import paths, as protoc and grpcurl do.
func importNames(files, importPaths []string) (names, paths []string, err error) {
	for _, p := range importPaths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, nil, err
		}
		paths = append(paths, abs)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil && !filepath.IsAbs(f) {
			for _, p := range paths {
				if _, err := os.Stat(filepath.Join(p, f)); err == nil {
					f = filepath.Join(p, f)
					break
				}
			}
		}
		if _, err := os.Stat(f); err != nil {
			where := "in the working directory"
			if len(importPaths) > 0 {
				where += " or under -I " + strings.Join(importPaths, ", ")
			}
			return nil, nil, fmt.Errorf("%s is not %s", f, where)
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, nil, err
		}
		name := ""
		for _, p := range paths {
			if rel, err := filepath.Rel(p, abs); err == nil && !strings.HasPrefix(rel, "..") {
				name = filepath.ToSlash(rel)
				break
			}
		}
		if name == "" {
			paths = append(paths, filepath.Dir(abs))
			name = filepath.Base(abs)
		}
		names = append(names, name)
	}
	return names, paths, nil
}

func (r *fileResolver) Service(name string) (protoreflect.ServiceDescriptor, error) {
	d, err := r.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("service %s: %w in the --proto files", name, ErrNotFound)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is a %T, not a service: %w", name, d, ErrNotFound)
	}
	return sd, nil
}

func (r *fileResolver) Services() ([]string, error) {
	var out []string
	r.files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			out = append(out, string(f.Services().Get(i).FullName()))
		}
		return true
	})
	slices.Sort(out)
	return out, nil
}

// NewRequest decodes a JSON request for md; an empty body is {}. Errors say
// where in the JSON the problem is, and name unknown fields.
func NewRequest(md protoreflect.MethodDescriptor, body []byte) (proto.Message, error) {
	req := dynamicpb.NewMessage(md.Input())
	if len(strings.TrimSpace(string(body))) == 0 {
		return req, nil
	}
	if err := protojson.Unmarshal(body, req); err != nil {
		// protojson writes "proto:" with a space or a no-break space.
		msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
		if msg == "unexpected EOF" {
			msg = fmt.Sprintf("the JSON ends early, after byte %d", len(body))
		}
		return nil, fmt.Errorf("request JSON for %s: %s", md.Input().FullName(), msg)
	}
	return req, nil
}

// NewRequests reads body as a call's requests: one JSON object for a
// method whose client sends one message, and for a client-streaming method
// any number of them, one after another (as grpcurl reads them).
func NewRequests(md protoreflect.MethodDescriptor, body []byte) ([]proto.Message, error) {
	if !md.IsStreamingClient() {
		req, err := NewRequest(md, body)
		if err != nil {
			return nil, err
		}
		return []proto.Message{req}, nil
	}
	var reqs []proto.Message
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return reqs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("request %d JSON for %s: %v", len(reqs)+1, md.Input().FullName(), err)
		}
		req, err := NewRequest(md, raw)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", len(reqs)+1, err)
		}
		reqs = append(reqs, req)
	}
}

// Call invokes md over cc with reqs (NewRequests) and hands each response
// to onResponse: one for a unary or client-streaming method, each message
// in turn for a server or bidirectional stream, which gets every request
// sent while its answers are read.
func Call(ctx context.Context, cc grpc.ClientConnInterface, md protoreflect.MethodDescriptor, reqs []proto.Message, onResponse func(proto.Message) error, opts ...grpc.CallOption) error {
	name := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
	if !md.IsStreamingClient() && len(reqs) != 1 {
		return fmt.Errorf("%s takes one request, not %d", name, len(reqs))
	}
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		resp := dynamicpb.NewMessage(md.Output())
		if err := cc.Invoke(ctx, name, reqs[0], resp, opts...); err != nil {
			return err
		}
		return onResponse(resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}
	stream, err := cc.NewStream(ctx, desc, name, opts...)
	if err != nil {
		return err
	}
	// Requests go out while answers come in: a bidirectional method may
	// answer each before it reads the next.
	sent := make(chan error, 1)
	go func() {
		for _, req := range reqs {
			if err := stream.SendMsg(req); err != nil {
				// io.EOF: the server ended the call; RecvMsg says why.
				if err != io.EOF {
					sent <- err
					return
				}
				break
			}
		}
		sent <- stream.CloseSend()
	}()
	for {
		resp := dynamicpb.NewMessage(md.Output())
		err := stream.RecvMsg(resp)
		if err == io.EOF {
			return <-sent
		}
		if err != nil {
			return err
		}
		if err := onResponse(resp); err != nil {
			return err
		}
		if !md.IsStreamingServer() {
			return <-sent // one answer ends a client stream
		}
	}
}

// FormatJSON renders a message as indented JSON with the field names of
// the .proto file, the way requests are usually written. protojson varies
// its spacing on purpose; re-indenting makes the output stable.
func FormatJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
