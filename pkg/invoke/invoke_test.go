package invoke

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/peervault/pvlb/pkg/demoserver"
)

func TestParseMethod(t *testing.T) {
	for in, want := range map[string][2]string{
		"/peervault.PeerVaultService/HealthCheck": {"peervault.PeerVaultService", "HealthCheck"},
		"peervault.PeerVaultService/HealthCheck":  {"peervault.PeerVaultService", "HealthCheck"},
		"peervault.PeerVaultService.HealthCheck":  {"peervault.PeerVaultService", "HealthCheck"},
	} {
		svc, m, err := ParseMethod(in)
		if err != nil || svc != want[0] || m != want[1] {
			t.Errorf("%q = %q, %q, %v", in, svc, m, err)
		}
	}
	for _, bad := range []string{"", "/", "nonsense", "/svc/", "/a/b/c"} {
		if _, _, err := ParseMethod(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func dial(t *testing.T) (*grpc.ClientConn, *demoserver.Server) {
	t.Helper()
	srv, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "server1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///"+srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, srv
}

func resolvers(t *testing.T, cc grpc.ClientConnInterface) map[string]Resolver {
	files, err := NewProtoFileResolver(context.Background(), []string{"../../proto/peervault/v1/peervault.proto"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	refl := NewReflectionResolver(context.Background(), cc)
	t.Cleanup(refl.Close)
	return map[string]Resolver{"proto files": files, "reflection": refl}
}

func TestFindMethodAndCall(t *testing.T) {
	cc, _ := dial(t)
	for name, r := range resolvers(t, cc) {
		t.Run(name, func(t *testing.T) {
			md, err := FindMethod(r, "/peervault.PeerVaultService/GetUserData")
			if err != nil {
				t.Fatal(err)
			}
			req, err := NewRequest(md, []byte(`{"user_id":"u1"}`))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			err = Call(context.Background(), cc, md, []proto.Message{req}, func(m proto.Message) error {
				b, err := FormatJSON(m)
				got = append(got, string(b))
				return err
			})
			if err != nil || len(got) != 1 || !strings.Contains(got[0], `"server": "server1"`) || !strings.Contains(got[0], `"user_id": "u1"`) {
				t.Fatalf("got %q, %v", got, err)
			}

			stream, _ := FindMethod(r, "peervault.PeerVaultService.WatchUserEvents")
			req, _ = NewRequest(stream, []byte(`{"user_id":"u1","count":4}`))
			n := 0
			if err := Call(context.Background(), cc, stream, []proto.Message{req}, func(proto.Message) error { n++; return nil }); err != nil || n != 4 {
				t.Fatalf("stream gave %d messages, %v", n, err)
			}

			_, err = FindMethod(r, "/peervault.PeerVaultService/Nope")
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "its methods: HealthCheck, GetUserData, WatchUserEvents, RecordUserEvents, EchoUserEvents") {
				t.Fatalf("unknown method: %v", err)
			}
			_, err = FindMethod(r, "/peervault.Nope/Get")
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "peervault.PeerVaultService") {
				t.Fatalf("unknown service: %v", err)
			}
		})
	}
}

// Client-streaming and bidirectional methods take a stream of JSON
// requests, one object after another, as grpcurl reads them.
func TestStreamingRequests(t *testing.T) {
	cc, _ := dial(t)
	for name, r := range resolvers(t, cc) {
		t.Run(name, func(t *testing.T) {
			record, err := FindMethod(r, "/peervault.PeerVaultService/RecordUserEvents")
			if err != nil {
				t.Fatal(err)
			}
			reqs, err := NewRequests(record, []byte(`{"user_id":"a","kind":"login"} {"user_id":"b"}
{"user_id":"c"}`))
			if err != nil || len(reqs) != 3 {
				t.Fatalf("%d requests, %v", len(reqs), err)
			}
			var got []string
			collect := func(m proto.Message) error {
				b, err := FormatJSON(m)
				got = append(got, string(b))
				return err
			}
			if err := Call(context.Background(), cc, record, reqs, collect); err != nil || len(got) != 1 || !strings.Contains(got[0], `"count": 3`) {
				t.Fatalf("record: %q, %v", got, err)
			}
			echo, _ := FindMethod(r, "/peervault.PeerVaultService/EchoUserEvents")
			reqs, _ = NewRequests(echo, []byte(`{"user_id":"a","sequence":1} {"user_id":"a","sequence":2}`))
			got = nil
			if err := Call(context.Background(), cc, echo, reqs, collect); err != nil || len(got) != 2 || !strings.Contains(got[1], `"sequence": "2"`) || !strings.Contains(got[1], `"server": "server1"`) {
				t.Fatalf("echo: %q, %v", got, err)
			}
			if _, err := NewRequests(record, []byte(`{"user_id":"a"} {"user_id":`)); err == nil || !strings.Contains(err.Error(), "request 2 JSON") {
				t.Fatalf("a broken second request: %v", err)
			}
			unary, _ := FindMethod(r, "/peervault.PeerVaultService/GetUserData")
			two, _ := NewRequests(record, []byte(`{"user_id":"a"} {"user_id":"b"}`))
			if err := Call(context.Background(), cc, unary, two, collect); err == nil || !strings.Contains(err.Error(), "takes one request, not 2") {
				t.Fatalf("two requests to a unary method: %v", err)
			}
		})
	}
}

func TestNewRequestErrors(t *testing.T) {
	files, err := NewProtoFileResolver(context.Background(), []string{"../../proto/peervault/v1/peervault.proto"}, []string{"../../proto/peervault/v1"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := FindMethod(files, "/peervault.PeerVaultService/GetUserData")
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]string{
		`{"nope": 1}`:        `unknown field "nope"`,
		`{"user_id": 5}`:     `invalid value for string field userId`,
		`{"user_id": "u1"`:   `the JSON ends early`,
		`[1]`:                `unexpected token [`,
		`{"user_id": "a",,}`: `(line 1:17)`,
	} {
		_, err := NewRequest(md, []byte(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	if req, err := NewRequest(md, []byte("  ")); err != nil || proto.Size(req) != 0 {
		t.Errorf("an empty body should be an empty request: %v", err)
	}
	if _, err := NewProtoFileResolver(context.Background(), []string{"missing.proto"}, nil); err == nil {
		t.Error("a missing .proto file gave no error")
	}
}

// --proto files are named from the working directory, or, as protoc and
// grpcurl name them, from an -I directory.
func TestProtoFilesUnderImportPaths(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		files, imports []string
		wantErr        string
	}{
		{[]string{"../../proto/peervault/v1/peervault.proto"}, nil, ""},
		{[]string{"peervault.proto"}, []string{"../../proto/peervault/v1"}, ""},
		{[]string{"v1/peervault.proto"}, []string{"../../proto/peervault"}, ""},
		{[]string{"nope.proto"}, []string{"../../proto"}, "nope.proto is not in the working directory or under -I ../../proto"},
	} {
		r, err := NewProtoFileResolver(ctx, c.files, c.imports)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v -I %v: error %v, want %q", c.files, c.imports, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v -I %v: %v", c.files, c.imports, err)
			continue
		}
		if _, err := FindMethod(r, "/peervault.PeerVaultService/GetUserData"); err != nil {
			t.Errorf("%v -I %v: %v", c.files, c.imports, err)
		}
	}
}
