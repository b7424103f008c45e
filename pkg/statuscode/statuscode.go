// Package statuscode names gRPC status codes and sets of them, so that the
// configuration, the simulator and the balancer's outcome classification can
// speak of codes without importing gRPC. A Code has the numeric value of
// google.golang.org/grpc/codes.Code.
package statuscode

import (
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Code is a gRPC status code.
type Code uint32

// The codes pvlb names in its defaults; the others parse by name.
const (
	OK                Code = 0
	Canceled          Code = 1
	Unknown           Code = 2
	InvalidArgument   Code = 3
	DeadlineExceeded  Code = 4
	ResourceExhausted Code = 8
	Internal          Code = 13
	Unavailable       Code = 14
	DataLoss          Code = 15
)

// names are the codes by number, spelt as the gRPC spec and service configs
// spell them.
var names = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// Names lists every code's name, OK first.
func Names() []string { return slices.Clone(names) }

// String returns the code's canonical name, such as "UNAVAILABLE".
func (c Code) String() string {
	if int(c) < len(names) {
		return names[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Parse reads a code name in any case.
func Parse(name string) (Code, bool) {
	i := slices.Index(names, strings.ToUpper(name))
	return Code(i), i >= 0
}

// Set is a set of codes; the zero Set is empty. Membership is one bit test,
// so classifying a call's status allocates nothing.
type Set uint32

// SetOf returns the set of the given codes; codes beyond the known ones are
// ignored.
func SetOf(codes ...Code) Set {
	var s Set
	for _, c := range codes {
		if int(c) < len(names) {
			s |= 1 << c
		}
	}
	return s
}

// Has reports whether c is in the set.
func (s Set) Has(c Code) bool { return c < 32 && s&(1<<c) != 0 }

// Codes lists the set's codes in numeric order.
func (s Set) Codes() []Code {
	out := make([]Code, 0, bits.OnesCount32(uint32(s)))
	for c := Code(0); c < 32; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// String lists the set's code names, such as "[UNAVAILABLE INTERNAL]".
func (s Set) String() string {
	parts := make([]string, 0, bits.OnesCount32(uint32(s)))
	for _, c := range s.Codes() {
		parts = append(parts, c.String())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// MarshalText writes the set as a comma-separated list of names.
func (s Set) MarshalText() ([]byte, error) {
	return []byte(strings.Trim(strings.ReplaceAll(s.String(), " ", ","), "[]")), nil
}
