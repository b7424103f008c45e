package pluginapi

import pb "github.com/peervault/pvlb/internal/discoveryv1"

// toproto / fromproto: plain Go outward, generated types inside.

func schemaToProto(s Schema) *pb.Schema {
	out := &pb.Schema{}
	for _, a := range s.Attributes {
		out.Attributes = append(out.Attributes, &pb.Attribute{
			Name: a.Name, Type: string(a.Type), Required: a.Required, Sensitive: a.Sensitive, Description: a.Description,
		})
	}
	for _, b := range s.Blocks {
		out.Blocks = append(out.Blocks, &pb.Block{
			Name: b.Name, Labels: b.Labels, Multiple: b.Multiple, Required: b.Required,
			Description: b.Description, Schema: schemaToProto(b.Schema),
		})
	}
	return out
}

func schemaFromProto(s *pb.Schema) Schema {
	var out Schema
	for _, a := range s.GetAttributes() {
		out.Attributes = append(out.Attributes, Attribute{
			Name: a.GetName(), Type: Type(a.GetType()), Required: a.GetRequired(), Sensitive: a.GetSensitive(), Description: a.GetDescription(),
		})
	}
	for _, b := range s.GetBlocks() {
		out.Blocks = append(out.Blocks, Block{
			Name: b.GetName(), Labels: b.GetLabels(), Multiple: b.GetMultiple(), Required: b.GetRequired(),
			Description: b.GetDescription(), Schema: schemaFromProto(b.GetSchema()),
		})
	}
	return out
}

func instancesToProto(in []ServiceInstance) []*pb.Instance {
	out := make([]*pb.Instance, 0, len(in))
	for _, i := range in {
		out = append(out, &pb.Instance{
			Id: i.ID, Address: i.Address, Port: int32(i.Port), Weight: int32(i.Weight),
			Health: pb.Health(i.Health), Zone: i.Zone, Metadata: i.Metadata,
		})
	}
	return out
}

func instancesFromProto(in []*pb.Instance) []ServiceInstance {
	out := make([]ServiceInstance, 0, len(in))
	for _, i := range in {
		out = append(out, ServiceInstance{
			ID: i.GetId(), Address: i.GetAddress(), Port: int(i.GetPort()), Weight: int(i.GetWeight()),
			Health: Health(i.GetHealth()), Zone: i.GetZone(), Metadata: i.GetMetadata(),
		})
	}
	return out
}
