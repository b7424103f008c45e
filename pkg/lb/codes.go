package lb

import (
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
)

// codeNames are the gRPC status codes by number, spelt as the gRPC spec and
// service configs spell them.
var codeNames = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// CodeNames lists every status code's name, OK first.
func CodeNames() []string { return slices.Clone(codeNames) }

// CodeName returns a status code's canonical name, such as "UNAVAILABLE".
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.Itoa(int(c)) + ")"
}

// ParseCode reads a status code name in any case.
func ParseCode(name string) (codes.Code, bool) {
	i := slices.Index(codeNames, strings.ToUpper(name))
	return codes.Code(i), i >= 0
}
