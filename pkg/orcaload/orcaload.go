// Package orcaload turns ORCA load reports (github.com/cncf/xds's
// OrcaLoadReport, as grpc-go's orca package sends and parses them) into
// the balancer's lb.LoadReport, for both gRPC paths.
package orcaload

import (
	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/peervault/pvlb/pkg/lb"
)

// TrailerKey is the trailer that carries a call's ORCA load report.
const TrailerKey = "endpoint-load-metrics-bin"

// FromProto returns what r says of the endpoint's load.
func FromProto(r *v3orcapb.OrcaLoadReport) lb.LoadReport {
	return lb.LoadReport{
		CPUUtilization:         r.GetCpuUtilization(),
		ApplicationUtilization: r.GetApplicationUtilization(),
		QPS:                    r.GetRpsFractional(),
		EPS:                    r.GetEps(),
	}
}

// FromTrailer returns the load report a call's trailer carries; false
// when it carries none, or one that does not parse.
func FromTrailer(md metadata.MD) (lb.LoadReport, bool) {
	v := md[TrailerKey]
	if len(v) != 1 {
		return lb.LoadReport{}, false
	}
	var r v3orcapb.OrcaLoadReport
	if err := proto.Unmarshal([]byte(v[0]), &r); err != nil {
		return lb.LoadReport{}, false
	}
	return FromProto(&r), true
}
