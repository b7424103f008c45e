package statuscode

import (
	"testing"

	"google.golang.org/grpc/codes"
)

func TestCodesMatchGRPC(t *testing.T) {
	for i, name := range Names() {
		if got := codes.Code(i).String(); normalise(got) != name {
			t.Errorf("code %d: grpc-go says %q, we say %q", i, got, name)
		}
	}
	if Code(codes.Unavailable) != Unavailable || Code(codes.DeadlineExceeded) != DeadlineExceeded || Code(codes.Internal) != Internal {
		t.Error("constants differ from grpc-go's")
	}
}

// normalise turns grpc-go's "DeadlineExceeded" into "DEADLINE_EXCEEDED".
func normalise(s string) string {
	if s == "Canceled" {
		return "CANCELLED"
	}
	out := []byte{}
	for i, r := range []byte(s) {
		if r >= 'A' && r <= 'Z' && i > 0 && s[i-1] >= 'a' {
			out = append(out, '_')
		}
		out = append(out, r&^0x20)
	}
	return string(out)
}

func TestParseAndSet(t *testing.T) {
	c, ok := Parse("unavailable")
	if !ok || c != Unavailable {
		t.Fatalf("Parse = %v, %v", c, ok)
	}
	if _, ok := Parse("UNAVAILBLE"); ok {
		t.Error("a misspelt code parsed")
	}
	s := SetOf(Unavailable, Internal)
	if !s.Has(Unavailable) || !s.Has(Internal) || s.Has(OK) || s.Has(Code(40)) {
		t.Errorf("set %v", s)
	}
	if got := s.String(); got != "[INTERNAL UNAVAILABLE]" {
		t.Errorf("String = %q", got)
	}
	if b, _ := s.MarshalText(); string(b) != "INTERNAL,UNAVAILABLE" {
		t.Errorf("MarshalText = %q", b)
	}
}
